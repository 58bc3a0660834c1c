package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/layout"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/snp"
)

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "revocations without fetching", cfg: Config{CheckRevocations: true}, wantErr: "CheckRevocations needs FetchCollateral"},
		{name: "empty SNP roots", cfg: Config{SNPRoots: &snp.Roots{}}, wantErr: "SNPRoots is empty"},
		{name: "defaults", cfg: Config{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// The debug bit and the other policy fields come out as claims; refusing them is appraisal's job.
func TestSimPolicyClaims(t *testing.T) {
	a := simAuthority(t)
	v, err := New(Config{Now: fixedNow, SimSNPRoots: a.SNPRoots(), SimTDXRoots: a.TDXRoots()})
	if err != nil {
		t.Fatal(err)
	}
	rd := [64]byte{7}
	ev := simSNPEvidence(t, a, sim.SNPLaunch{Policy: sim.DefaultSNPPolicy | sim.PolicyDebug, VMPL: 1}, rd)
	c, err := v.Verify(context.Background(), Input{TEE: "snp", Evidence: ev, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Debug || c.Raw["policy_debug_allowed"] != true || c.SNP.VMPL != 1 || c.SNP.ProductLine != "Milan" ||
		c.Raw["chip_id"] == "" || c.SNP.ReportedTCB != (TCB{Bootloader: 4, SNP: 22, Microcode: 213}) {
		t.Fatalf("claims = %+v %+v", c, c.SNP)
	}
	ev = simTDXEvidence(t, a, sim.TDXLaunch{Debug: true, RTMRs: [4][48]byte{{1}}}, rd)
	if c, err = v.Verify(context.Background(), Input{TEE: "tdx", Evidence: ev, ReportData: rd}); err != nil {
		t.Fatal(err)
	}
	if !c.Debug || !strings.HasPrefix(c.Raw["rtmr_0"].(string), "01") || c.Raw["td_attributes"] != "0100004000000000" {
		t.Fatalf("claims = %+v", c.Raw)
	}
}

// fakeKDS serves what AMD's KDS serves for the Milan sample, and nothing else.
type fakeKDS map[string][]byte

func (f fakeKDS) Get(_ context.Context, url string) (http.Header, []byte, error) {
	if body, ok := f[url]; ok {
		return http.Header{}, body, nil
	}
	return nil, nil, fmt.Errorf("fake KDS: no %s", url)
}

// Evidence without a certificate chain: refused offline, verified with a fetcher.
func TestFetchCollateral(t *testing.T) {
	report, err := json.Marshal(evidence.SNP{Report: testdata.AttestationBytes[:layout.SNPReportSize]})
	if err != nil {
		t.Fatal(err)
	}
	_, rd := milanEvidence(t)
	kds := fakeKDS{
		"https://kdsintf.amd.com/vcek/v1/Milan/cert_chain": trust.AskArkMilanVcekBytes,
		"https://kdsintf.amd.com/vcek/v1/Milan/3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68": testdata.VcekBytes,
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "offline", cfg: Config{Now: fixedNow}, wantErr: "fetching from AMD KDS is off"},
		{name: "fetching", cfg: Config{Now: fixedNow, FetchCollateral: true, Getter: kds}},
		{name: "fetching fails", cfg: Config{Now: fixedNow, FetchCollateral: true, Getter: fakeKDS{}}, wantErr: "fake KDS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), Input{TEE: "snp", Evidence: report, ReportData: rd})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (!errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// One verifier serves many requests at once (run with -race).
func TestConcurrentVerify(t *testing.T) {
	a := simAuthority(t)
	v, err := New(Config{Now: fixedNow, SimSNPRoots: a.SNPRoots(), SimTDXRoots: a.TDXRoots()})
	if err != nil {
		t.Fatal(err)
	}
	rd := [64]byte{5}
	inputs := []Input{
		{TEE: "snp", Evidence: simSNPEvidence(t, a, sim.SNPLaunch{}, rd), ReportData: rd},
		{TEE: "tdx", Evidence: simTDXEvidence(t, a, sim.TDXLaunch{}, rd), ReportData: rd},
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			_, err := v.Verify(context.Background(), inputs[i%2])
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
