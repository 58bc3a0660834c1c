package verifier

import (
	"context"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim"
)

// FuzzVerify: any evidence for either TEE is refused or verified, never a panic; and whatever
// verifies carries the expected report data.
func FuzzVerify(f *testing.F) {
	a := simAuthority(f)
	rd := [64]byte{1}
	snpEv := simSNPEvidence(f, a, sim.SNPLaunch{}, rd)
	tdxEv := simTDXEvidence(f, a, sim.TDXLaunch{}, rd)
	snpSample, _ := milanEvidence(f)
	tdxSample, _ := sampleTDXEvidence(f)
	f.Add(false, []byte(snpEv))
	f.Add(true, []byte(tdxEv))
	f.Add(false, []byte(snpSample))
	f.Add(true, []byte(tdxSample))
	v, err := New(Config{Now: fixedNow, SimSNPRoots: a.SNPRoots(), SimTDXRoots: a.TDXRoots()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, isTDX bool, ev []byte) {
		tee := "snp"
		if isTDX {
			tee = "tdx"
		}
		c, err := v.Verify(context.Background(), Input{TEE: tee, Evidence: ev, ReportData: rd})
		if err == nil && string(c.ReportData) != string(rd[:]) {
			t.Fatalf("verified evidence with report data %x", c.ReportData)
		}
	})
}
