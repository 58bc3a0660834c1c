package verifier

import (
	"context"
	"crypto/rand"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim"
)

// fuzzAuthorityFile is a sim authority made once (`go test -run TestFuzzAuthorityFixture
// ./attestation/verifier/ -args -update-fuzz-authority`) and committed, so that each fuzzing worker
// starts in milliseconds: generating one costs two RSA-4096 keys, which held FuzzVerify to a
// handful of executions in a 45-second budget. Its keys are test-only, certificates valid
// from a day before sampleTime for seven years.
var fuzzAuthorityFile = filepath.Join("testdata", "fuzz-authority.pem")

var updateFuzzAuthority = flag.Bool("update-fuzz-authority", false, "write a new "+fuzzAuthorityFile)

// TestFuzzAuthorityFixture: the committed authority parses and verifies its own evidence at
// sampleTime (or, with -update-fuzz-authority, is made anew).
func TestFuzzAuthorityFixture(t *testing.T) {
	if *updateFuzzAuthority {
		a, err := sim.NewAuthority(rand.Reader, authorityA.opts)
		if err != nil {
			t.Fatal(err)
		}
		data, err := a.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fuzzAuthorityFile, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := fuzzAuthority(t)
	v, err := New(Config{Now: fixedNow, SimSNPRoots: a.SNPRoots(), SimTDXRoots: a.TDXRoots()})
	if err != nil {
		t.Fatal(err)
	}
	rd := [64]byte{1}
	for tee, ev := range map[string][]byte{
		"snp": simSNPEvidence(t, a, sim.SNPLaunch{}, rd),
		"tdx": simTDXEvidence(t, a, sim.TDXLaunch{}, rd),
	} {
		if _, err := v.Verify(context.Background(), Input{TEE: tee, Evidence: ev, ReportData: rd}); err != nil {
			t.Errorf("%s evidence of the fixture's authority: %v", tee, err)
		}
	}
}

// fuzzAuthority reads fuzzAuthorityFile.
func fuzzAuthority(t testing.TB) *sim.Authority {
	t.Helper()
	data, err := os.ReadFile(fuzzAuthorityFile)
	if err != nil {
		t.Fatal(err)
	}
	a, err := sim.ParseAuthority(data)
	if err != nil {
		t.Fatalf("%s: %v", fuzzAuthorityFile, err)
	}
	return a
}

// FuzzVerify: any evidence for either TEE is refused or verified, never a panic; and whatever
// verifies carries the expected report data.
func FuzzVerify(f *testing.F) {
	a := fuzzAuthority(f)
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
