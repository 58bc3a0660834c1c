package layout

import (
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"
	tdxabi "github.com/google/go-tdx-guest/abi"
)

// TestAgainstLibraries: the layouts agree with go-sev-guest's and go-tdx-guest's parsers, the
// libraries that verify the same reports.
func TestAgainstLibraries(t *testing.T) {
	if SNPReportSize != sevabi.ReportSize {
		t.Errorf("SNPReportSize %#x, go-sev-guest %#x", SNPReportSize, sevabi.ReportSize)
	}
	raw := make([]byte, SNPReportSize)
	raw[0] = SNPReportMinVersion
	raw[0x08+2] = 0x02 // POLICY bit 17, reserved and 1
	raw[0x34] = 1      // SIGNATURE_ALGO: ECDSA P-384 with SHA-384
	for i := range SNPHostDataSize {
		raw[SNPHostDataOffset+i] = byte(i + 1)
	}
	r, err := sevabi.ReportToProto(raw)
	if err != nil {
		t.Fatal(err)
	}
	if hd := r.GetHostData(); len(hd) != SNPHostDataSize || hd[0] != 1 || hd[SNPHostDataSize-1] != SNPHostDataSize {
		t.Errorf("go-sev-guest reads HOST_DATA %x", hd)
	}
	if tdxabi.QuoteVersion != 4 || tdxabi.TeeTDX != TDXQuoteTEEType || tdxabi.MrConfigIDSize != TDXMRConfigIDSize {
		t.Errorf("go-tdx-guest: quote version %d, TDX TEE type %#x, MRCONFIGID %d bytes", tdxabi.QuoteVersion, tdxabi.TeeTDX, tdxabi.MrConfigIDSize)
	}
	// go-tdx-guest's MRCONFIGID ends at 0xE8 of the quote body.
	if end := TDXQuoteMRConfigIDOffset - TDXQuoteHeaderSize + TDXMRConfigIDSize; end != 0xE8 {
		t.Errorf("MRCONFIGID ends at %#x of the quote body, go-tdx-guest says 0xe8", end)
	}
}
