package evidence

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/veil-runtime/veil/attestation/layout"
)

// FuzzSNPEvidence: any input either fails to parse or is valid JSON (encoding/json agrees) and
// round-trips to the same evidence.
func FuzzSNPEvidence(f *testing.F) {
	js, err := json.Marshal(SNP{Report: milanReport(f), CertChain: []CertTableEntry{{Type: CertVCEK, Data: []byte{1, 2}}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(js)
	f.Add([]byte(`{"attestation_report":"AAAA","cert_chain":null}`))
	f.Add([]byte(`{"attestation_report":{"version":2},"cert_chain":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseSNP(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("parsed evidence does not marshal: %v", err)
		}
		var back SNP
		if err := json.Unmarshal(again, &back); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(back.Report, ev.Report) || len(back.CertChain) != len(ev.CertChain) {
			t.Fatal("round trip changed the evidence")
		}
	})
}

// FuzzSNPReport: the byte-array decoder and the sev form never panic, and accepted reports are
// exactly layout.SNPReportSize bytes.
func FuzzSNPReport(f *testing.F) {
	js, _ := MarshalSNPReport(milanReport(f))
	f.Add([]byte(js))
	f.Add([]byte(`{"report_data":[0, 1 ,255]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := UnmarshalSNPReport(data)
		if err == nil && len(raw) != layout.SNPReportSize {
			t.Fatalf("accepted a %d-byte report", len(raw))
		}
	})
}

// FuzzTDXEvidence: parsing never panics and keeps the quote.
func FuzzTDXEvidence(f *testing.F) {
	f.Add([]byte(`{"cc_eventlog":null,"quote":"AQID"}`))
	f.Add([]byte(`{"cc_eventlog":"BA==","quote":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := ParseTDX(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		again, _ := json.Marshal(ev)
		var back TDX
		if err := json.Unmarshal(again, &back); err != nil || !bytes.Equal(back.Quote, ev.Quote) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
