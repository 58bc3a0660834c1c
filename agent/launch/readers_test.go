package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	sevabi "github.com/google/go-sev-guest/abi"
	sevtestdata "github.com/google/go-sev-guest/verify/testdata"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtestdata "github.com/google/go-tdx-guest/testing/testdata"

	"github.com/veil-runtime/veil/attestation/layout"
)

// HOST_DATA of go-sev-guest's real Milan sample report, read at its offset, is what the
// library's own parser finds.
func TestSNPHostDataOfSample(t *testing.T) {
	raw := sevtestdata.AttestationBytes
	want, err := sevabi.ReportToProto(raw[:layout.SNPReportSize])
	if err != nil {
		t.Fatal(err)
	}
	got, err := SNPHostData(raw)
	if err != nil || !bytes.Equal(got, want.GetHostData()) || len(got) != layout.SNPHostDataSize {
		t.Fatalf("SNPHostData = %x, %v; want %x", got, err, want.GetHostData())
	}
	// The field really is at 0xC0: mark it and read it back.
	marked := bytes.Clone(raw[:layout.SNPReportSize])
	copy(marked[0xC0:], bytes.Repeat([]byte{0x5A}, 32))
	if got, _ := SNPHostData(marked); !bytes.Equal(got, bytes.Repeat([]byte{0x5A}, 32)) {
		t.Fatalf("marked HOST_DATA read back as %x", got)
	}
	if p, _ := sevabi.ReportToProto(marked); !bytes.Equal(p.GetHostData(), bytes.Repeat([]byte{0x5A}, 32)) {
		t.Fatalf("go-sev-guest reads the marked report's HOST_DATA as %x", p.GetHostData())
	}
	if _, err := SNPHostData(raw[:0x100]); err == nil {
		t.Error("a short report was read")
	}
}

// MRCONFIGID of go-tdx-guest's real sample quote, read at its offset, is what the library's
// parser finds; so is a marked one.
func TestTDXQuoteMRConfigIDOfSample(t *testing.T) {
	raw := bytes.Clone(tdxtestdata.RawQuote)
	check := func(what string) {
		t.Helper()
		q, err := tdxabi.QuoteToProto(raw)
		if err != nil {
			t.Fatal(err)
		}
		want := q.(*tdxpb.QuoteV4).GetTdQuoteBody().GetMrConfigId()
		got, err := TDXQuoteMRConfigID(raw)
		if err != nil || !bytes.Equal(got, want) || len(got) != layout.TDXMRConfigIDSize {
			t.Fatalf("%s: TDXQuoteMRConfigID = %x, %v; want %x", what, got, err, want)
		}
	}
	check("sample")
	copy(raw[layout.TDXQuoteMRConfigIDOffset:], bytes.Repeat([]byte{0xC3}, layout.TDXMRConfigIDSize))
	check("marked")
	bad := bytes.Clone(raw)
	bad[0] = 5
	if _, err := TDXQuoteMRConfigID(bad); err == nil || !strings.Contains(err.Error(), "version 5") {
		t.Errorf("a version 5 quote: %v", err)
	}
}

// A TDREPORT's TDINFO_STRUCT (at 512) starts with ATTRIBUTES, XFAM, MRTD and MRCONFIGID, the
// same fields in the same order as a quote body from TDATTRIBUTES on. (go-tdx-guest's
// report.dat is not a whole TDREPORT, so the real sample quote's fields are placed in one.)
func TestTDReportMRConfigID(t *testing.T) {
	q, err := tdxabi.QuoteToProto(tdxtestdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	body := q.(*tdxpb.QuoteV4).GetTdQuoteBody()
	const tdAttributesInQuote = layout.TDXQuoteHeaderSize + 16 + 48 + 48 + 8
	rep := make([]byte, layout.TDReportSize)
	copy(rep[512:], tdxtestdata.RawQuote[tdAttributesInQuote:tdAttributesInQuote+8+8+48+48])
	if !bytes.Equal(rep[512+16:512+64], body.GetMrTd()) {
		t.Fatalf("MRTD not where the quote has it: %x", rep[512+16:512+64])
	}
	got, err := TDReportMRConfigID(rep)
	if err != nil || !bytes.Equal(got, body.GetMrConfigId()) {
		t.Fatalf("TDReportMRConfigID = %x, %v; want %x", got, err, body.GetMrConfigId())
	}
	if _, err := TDReportMRConfigID(rep[:1000]); err == nil {
		t.Error("a short TDREPORT was read")
	}
}

type fakeReporter struct {
	raw []byte
	err error
}

func (f fakeReporter) GetRawQuote([64]byte) ([]byte, error) { return f.raw, f.err }

func TestSNPReader(t *testing.T) {
	ctx := context.Background()
	r := &SNPReader{Provider: func() (RawReporter, error) { return fakeReporter{raw: sevtestdata.AttestationBytes}, nil }}
	hd, err := r.HostData(ctx)
	if err != nil || !bytes.Equal(hd, sevtestdata.AttestationBytes[0xC0:0xE0]) {
		t.Fatalf("HostData = %x, %v", hd, err)
	}
	boom := errors.New("no sev-guest")
	r = &SNPReader{Provider: func() (RawReporter, error) { return nil, boom }}
	if _, err := r.HostData(ctx); !errors.Is(err, boom) {
		t.Fatalf("no provider: %v", err)
	}
	if _, err := (&TDXReader{Device: "/nonexistent/tdx_guest"}).HostData(ctx); err == nil {
		t.Fatal("a TDX reader without a device read something")
	}
	for tee, want := range map[string]string{"snp": "*launch.SNPReader", "tdx": "*launch.TDXReader", "sim": "*launch.SimReader", "none": "<nil>"} {
		if got := typeName(NewReader(tee)); got != want {
			t.Errorf("NewReader(%s) is %s, want %s", tee, got, want)
		}
	}
}

func typeName(v any) string {
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%T", v)
}
