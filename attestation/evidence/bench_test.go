package evidence

import (
	"encoding/json"
	"testing"

	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/go-sev-guest/verify/trust"
)

func benchEvidence(b *testing.B, chain []CertTableEntry) {
	js, err := json.Marshal(SNP{Report: milanReport(b), CertChain: chain})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(js)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSNP(js); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalSNP parses SNP evidence with a VCEK, as the KBS does for each request.
func BenchmarkUnmarshalSNP(b *testing.B) {
	benchEvidence(b, []CertTableEntry{{Type: CertVCEK, Data: testdata.VcekBytes}})
}

// BenchmarkEncodingJSONSNP is the same through encoding/json, which scans the input first.
func BenchmarkEncodingJSONSNP(b *testing.B) {
	js, err := json.Marshal(SNP{Report: milanReport(b), CertChain: []CertTableEntry{{Type: CertVCEK, Data: testdata.VcekBytes}}})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(js)))
	for b.Loop() {
		var ev SNP
		if err := json.Unmarshal(js, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalSNPFullChain parses SNP evidence with VCEK, ASK and ARK.
func BenchmarkUnmarshalSNPFullChain(b *testing.B) {
	benchEvidence(b, []CertTableEntry{{Type: CertVCEK, Data: testdata.VcekBytes},
		{Type: CertASK, Data: trust.AskArkMilanVcekBytes[:1500]}, {Type: CertARK, Data: trust.AskArkMilanVcekBytes[:1500]}})
}
