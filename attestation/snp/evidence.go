package snp

import (
	"errors"
	"fmt"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"

	"github.com/veil-runtime/veil/attestation/evidence"
)

// Attestation converts SNP evidence into go-sev-guest's form: the parsed report and the
// certificate chain the evidence carried (entries it does not know go to Extras by GUID).
func Attestation(ev *evidence.SNP) (*spb.Attestation, error) {
	if ev == nil {
		return nil, errors.New("snp: no evidence")
	}
	report, err := abi.ReportToProto(ev.Report)
	if err != nil {
		return nil, fmt.Errorf("snp report: %w", err)
	}
	chain := &spb.CertificateChain{Extras: map[string][]byte{}}
	for _, e := range ev.CertChain {
		switch e.Type {
		case evidence.CertVCEK:
			chain.VcekCert = e.Data
		case evidence.CertVLEK:
			chain.VlekCert = e.Data
		case evidence.CertASK:
			chain.AskCert = e.Data
		case evidence.CertARK:
			chain.ArkCert = e.Data
		case evidence.CertEmpty:
		default:
			if e.GUID != "" {
				chain.Extras[e.GUID] = e.Data
			}
		}
	}
	return &spb.Attestation{Report: report, CertificateChain: chain}, nil
}

// CertTableEntries turns a raw GHCB certificate table (what an extended report request returns
// after the report) into evidence entries. The all-zero GUID ends the table and is skipped.
func CertTableEntries(table []byte) ([]evidence.CertTableEntry, error) {
	if len(table) == 0 {
		return nil, nil
	}
	// go-sev-guest adds offset and length in uint32, so a range that wraps passes its check
	// and panics (FuzzCertTable): check each entry's range without overflow first.
	hdr, err := abi.ParseSnpCertTableHeader(table)
	if err != nil {
		return nil, fmt.Errorf("snp certificate table: %w", err)
	}
	for i, e := range hdr {
		if uint64(e.Offset)+uint64(e.Length) > uint64(len(table)) {
			return nil, fmt.Errorf("snp certificate table: entry %d (offset %d, length %d) lies outside the %d-byte table",
				i, e.Offset, e.Length, len(table))
		}
	}
	var t abi.CertTable
	if err := t.Unmarshal(table); err != nil {
		return nil, fmt.Errorf("snp certificate table: %w", err)
	}
	out := make([]evidence.CertTableEntry, 0, len(t.Entries))
	for _, e := range t.Entries {
		guid := e.GUID.String()
		typ := evidence.CertTypeOfGUID(guid)
		if typ == evidence.CertEmpty {
			continue
		}
		out = append(out, evidence.CertTableEntry{Type: typ, GUID: guid, Data: e.RawCert})
	}
	return out, nil
}

// ReportSigner returns "VCEK" or "VLEK": the key that signed a raw report, from its SIGNER_INFO.
func ReportSigner(report *spb.Report) (string, error) {
	info, err := abi.ParseSignerInfo(report.GetSignerInfo())
	if err != nil {
		return "", fmt.Errorf("snp report signer info: %w", err)
	}
	switch info.SigningKey {
	case abi.VcekReportSigner:
		return evidence.CertVCEK, nil
	case abi.VlekReportSigner:
		return evidence.CertVLEK, nil
	default:
		return "", fmt.Errorf("snp report is signed by %v, not a VCEK or VLEK", info.SigningKey)
	}
}
