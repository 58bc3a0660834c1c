package snp

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/google/uuid"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/layout"
	"github.com/veil-runtime/veil/attestation/tdx"
)

func TestDefaultRoots(t *testing.T) {
	r := DefaultRoots()
	if got := strings.Join(r.ProductLines(), ","); got != "Genoa,Milan,Turin" {
		t.Fatalf("product lines = %s", got)
	}
	for line, roots := range r.TrustedRoots() {
		pc := roots[0].ProductCerts
		if len(roots) != 1 || pc.Ark == nil || pc.Ask == nil || pc.Asvk == nil {
			t.Errorf("%s: want one ARK with its ASK and ASVK, got %d roots %+v", line, len(roots), pc)
		}
	}
}

func TestParseRoots(t *testing.T) {
	milanVCEK := string(trust.AskArkMilanVcekBytes)
	ask := milanVCEK[:strings.Index(milanVCEK, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----")]
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "kds cert_chain", in: milanVCEK},
		{name: "two bundles, one ARK", in: milanVCEK + string(trust.AskArkMilanVlekBytes)},
		{name: "no ARK", in: ask, wantErr: "no ARK certificate"},
		{name: "ASK without its ARK", in: ask + "\n" + string(pemBlocks(t, trust.AskArkGenoaVcekBytes)[1]), wantErr: `"SEV-Milan" is not signed by any ARK-Milan`},
		{name: "not AMD", in: ask[:0] + string(pemBlocks(t, trust.AskArkGenoaVcekBytes)[1]) + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: intelRoot(t)})), wantErr: "neither an ARK, an ASK nor an ASVK"},
		{name: "empty", in: "", wantErr: "no ARK certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRoots([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || r.Empty() {
				t.Fatalf("err = %v", err)
			}
		})
	}
	merged := DefaultRoots().Merge(nil).Merge(&Roots{})
	if len(merged.ProductLines()) != 3 {
		t.Errorf("merge lost lines: %v", merged.ProductLines())
	}
}

func pemBlocks(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		out = append(out, pem.EncodeToMemory(b))
	}
}

func intelRoot(t *testing.T) []byte {
	t.Helper()
	b, _ := pem.Decode(tdx.IntelRootPEM())
	return b.Bytes
}

func TestEvidenceFromQuote(t *testing.T) {
	report := testdata.AttestationBytes[:abi.ReportSize]
	table := (&abi.CertTable{Entries: []abi.CertTableEntry{
		{GUID: uuid.MustParse(abi.VcekGUID), RawCert: testdata.VcekBytes},
		{GUID: uuid.MustParse(abi.ExtraPlatformInfoGUID), RawCert: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	}}).Marshal()
	js, err := EvidenceFromQuote(append(bytes.Clone(report), table...))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.ParseSNP(js)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.CertChain) != 2 || ev.CertChain[0].Type != evidence.CertVCEK || ev.CertChain[1].Type != evidence.CertOther {
		t.Fatalf("chain = %+v", ev.CertChain)
	}
	att, err := Attestation(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(att.GetCertificateChain().GetVcekCert(), testdata.VcekBytes) || len(att.GetCertificateChain().GetExtras()) != 1 {
		t.Fatalf("attestation chain = %+v", att.GetCertificateChain())
	}
	if s, err := ReportSigner(att.GetReport()); err != nil || s != "VCEK" {
		t.Fatalf("signer = %q, %v", s, err)
	}
	if _, err := EvidenceFromQuote(report[:100]); err == nil {
		t.Fatal("short quote accepted")
	}
	if js, err := EvidenceFromQuote(report); err != nil || !strings.HasSuffix(string(js), `"cert_chain":null}`) {
		t.Fatalf("report without a table = %.40s, %v", js, err)
	}
}

// FuzzAttestation: evidence that parses converts to go-sev-guest's form or fails, never panics.
func FuzzAttestation(f *testing.F) {
	js, err := evidence.SNP{Report: testdata.AttestationBytes[:abi.ReportSize],
		CertChain: []evidence.CertTableEntry{{Type: evidence.CertVCEK, Data: testdata.VcekBytes}}}.JSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(js)
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := evidence.ParseSNP(data)
		if err != nil {
			return
		}
		if att, err := Attestation(ev); err == nil {
			_, _ = ReportSigner(att.GetReport())
		}
	})
}

// FuzzCertTable: raw certificate tables never panic the conversion.
func FuzzCertTable(f *testing.F) {
	f.Add((&abi.CertTable{Entries: []abi.CertTableEntry{{GUID: uuid.MustParse(abi.VcekGUID), RawCert: []byte{1}}}}).Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		if entries, err := CertTableEntries(data); err == nil {
			if _, err := json.Marshal(evidence.SNP{Report: make([]byte, layout.SNPReportSize), CertChain: entries}); err != nil {
				t.Fatal(err)
			}
		}
	})
}
