package appraisal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/verifier"
)

var simOnce struct {
	sync.Once
	a   *sim.Authority
	v   verifier.Verifier
	err error
}

// claimsOf verifies sim evidence for a launch and returns its claims.
func claimsOf(t testing.TB, tee string, snpLaunch sim.SNPLaunch, tdxLaunch sim.TDXLaunch) *verifier.Claims {
	t.Helper()
	simOnce.Do(func() {
		simOnce.a, simOnce.err = sim.NewAuthority(rand.Reader, sim.Options{})
		if simOnce.err == nil {
			simOnce.v, simOnce.err = verifier.New(verifier.Config{SimSNPRoots: simOnce.a.SNPRoots(), SimTDXRoots: simOnce.a.TDXRoots()})
		}
	})
	if simOnce.err != nil {
		t.Fatal(simOnce.err)
	}
	var att *sim.Attester
	var err error
	if tee == "snp" {
		att, err = sim.NewSNPAttester(simOnce.a, snpLaunch)
	} else {
		att, err = sim.NewTDXAttester(simOnce.a, tdxLaunch)
	}
	if err != nil {
		t.Fatal(err)
	}
	rd := [64]byte{1}
	ev, err := att.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := simOnce.v.Verify(context.Background(), verifier.Input{TEE: tee, Evidence: ev, ReportData: rd})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	goodMeasurement = [48]byte{0xAB}
	goodHex         = hex.EncodeToString(goodMeasurement[:])
)

func TestAppraiseSNP(t *testing.T) {
	fmc := uint8(1)
	vmpl0 := uint32(0)
	good := sim.SNPLaunch{Measurement: goodMeasurement}
	tests := []struct {
		name       string
		ref        *ReferenceValues
		launch     sim.SNPLaunch
		want       Status
		wantVector map[string]int
		wantReason string
	}{
		{name: "affirming", ref: &ReferenceValues{SNP: &SNPReference{Measurements: []string{goodHex}, AllowSimulated: true, VMPL: &vmpl0}},
			launch: good, want: StatusAffirming, wantVector: map[string]int{"hardware": 2, "executables": 2, "configuration": 0, "runtime-opaque": 0}},
		{name: "no reference values", ref: nil, launch: good, want: StatusWarning,
			wantVector: map[string]int{"hardware": 32, "executables": 33}, wantReason: "simulated TEE"},
		{name: "upper-case hex matches", ref: &ReferenceValues{SNP: &SNPReference{Measurements: []string{strings.ToUpper(goodHex)}, AllowSimulated: true}},
			launch: good, want: StatusAffirming},
		{name: "measurement not in reference values", ref: &ReferenceValues{SNP: &SNPReference{Measurements: []string{goodHex}}},
			launch: sim.SNPLaunch{Measurement: [48]byte{1}}, want: StatusContraindicated,
			wantVector: map[string]int{"executables": 96}, wantReason: "measurement 0100"},
		{name: "debug forbidden", ref: &ReferenceValues{SNP: &SNPReference{Measurements: []string{goodHex}, AllowSimulated: true}},
			launch: sim.SNPLaunch{Measurement: goodMeasurement, Policy: sim.DefaultSNPPolicy | sim.PolicyDebug}, want: StatusContraindicated,
			wantVector: map[string]int{"configuration": 96}, wantReason: "debugging is enabled"},
		{name: "debug allowed", ref: &ReferenceValues{SNP: &SNPReference{Measurements: []string{goodHex}, AllowSimulated: true, AllowDebug: true}},
			launch: sim.SNPLaunch{Measurement: goodMeasurement, Policy: sim.DefaultSNPPolicy | sim.PolicyDebug}, want: StatusAffirming},
		{name: "migration agent not allowed", ref: &ReferenceValues{SNP: &SNPReference{AllowSimulated: true}},
			launch: sim.SNPLaunch{Policy: sim.DefaultSNPPolicy | sim.PolicyMigrate}, want: StatusContraindicated, wantReason: "flag migrate_ma is set"},
		{name: "smt not allowed", ref: &ReferenceValues{SNP: &SNPReference{AllowSimulated: true, AllowedPolicyFlags: []string{}}},
			launch: good, want: StatusContraindicated, wantReason: "flag smt is set"},
		{name: "single socket required", ref: &ReferenceValues{SNP: &SNPReference{AllowSimulated: true, RequiredPolicyFlags: []string{"single_socket"}}},
			launch: good, want: StatusContraindicated, wantReason: "single_socket is required"},
		{name: "tcb below minimum", ref: &ReferenceValues{SNP: &SNPReference{AllowSimulated: true, MinimumTCB: &TCB{SNP: 23}}},
			launch: good, want: StatusContraindicated, wantVector: map[string]int{"hardware": 96}, wantReason: "reported TCB snp 22 is below the minimum 23"},
		{name: "fmc minimum on a Milan tcb", ref: &ReferenceValues{SNP: &SNPReference{AllowSimulated: true, MinimumTCB: &TCB{FMC: &fmc}}},
			launch: good, want: StatusContraindicated, wantReason: "fmc 0 is below the minimum 1"},
		{name: "tcb at minimum", ref: &ReferenceValues{SNP: &SNPReference{AllowSimulated: true, MinimumTCB: &TCB{Bootloader: 4, SNP: 22, Microcode: 213}}},
			launch: good, want: StatusWarning},
		{name: "wrong vmpl", ref: &ReferenceValues{SNP: &SNPReference{AllowSimulated: true, VMPL: &vmpl0}},
			launch: sim.SNPLaunch{VMPL: 2}, want: StatusContraindicated, wantReason: "VMPL is 2, want 0"},
		{name: "guest svn", ref: &ReferenceValues{SNP: &SNPReference{AllowSimulated: true, MinimumGuestSVN: 3}},
			launch: sim.SNPLaunch{GuestSVN: 2}, want: StatusContraindicated, wantReason: "GUEST_SVN 2 is below the minimum 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(context.Background(), Options{Reference: tc.ref})
			if err != nil {
				t.Fatal(err)
			}
			res, err := a.Appraise(context.Background(), claimsOf(t, "snp", tc.launch, sim.TDXLaunch{}))
			if err != nil {
				t.Fatal(err)
			}
			check(t, res, tc.want, tc.wantVector, tc.wantReason)
		})
	}
}

func check(t testing.TB, res *Result, want Status, vector map[string]int, reason string) {
	t.Helper()
	if res.Status != want || res.PolicyID != DefaultPolicyID || len(res.TrustworthinessVector) != 8 {
		t.Fatalf("result = %+v, want status %s", res, want)
	}
	for k, v := range vector {
		if res.TrustworthinessVector[k] != v {
			t.Errorf("%s = %d, want %d (%+v)", k, res.TrustworthinessVector[k], v, res)
		}
	}
	if reason != "" && !strings.Contains(strings.Join(res.Reasons, "\n"), reason) {
		t.Errorf("reasons = %q, want one containing %q", res.Reasons, reason)
	}
}

func TestAppraiseTDX(t *testing.T) {
	good := sim.TDXLaunch{MRTD: goodMeasurement, RTMRs: [4][48]byte{{1}}}
	rtmr0 := hex.EncodeToString(good.RTMRs[0][:])
	tests := []struct {
		name       string
		ref        *TDXReference
		launch     sim.TDXLaunch
		want       Status
		wantReason string
	}{
		{name: "affirming", ref: &TDXReference{MRTD: []string{goodHex}, RTMR0: []string{rtmr0}, AllowSimulated: true}, launch: good, want: StatusAffirming},
		{name: "mrtd not in reference values", ref: &TDXReference{MRTD: []string{goodHex}, AllowSimulated: true},
			launch: sim.TDXLaunch{}, want: StatusContraindicated, wantReason: "mr_td 0000"},
		{name: "rtmr not in reference values", ref: &TDXReference{MRTD: []string{goodHex}, RTMR0: []string{goodHex}, AllowSimulated: true},
			launch: good, want: StatusContraindicated, wantReason: "rtmr_0 01"},
		{name: "debug forbidden", ref: &TDXReference{MRTD: []string{goodHex}, AllowSimulated: true},
			launch: sim.TDXLaunch{MRTD: goodMeasurement, Debug: true}, want: StatusContraindicated, wantReason: "debugging is enabled"},
		{name: "tee tcb svn below minimum", ref: &TDXReference{AllowSimulated: true, MinimumTEETCBSVN: "03010000000000000000000000000000"},
			launch: good, want: StatusContraindicated, wantReason: "TEE_TCB_SVN 0300040000"},
		{name: "tee tcb svn at minimum", ref: &TDXReference{MRTD: []string{goodHex}, AllowSimulated: true, MinimumTEETCBSVN: "03000400000000000000000000000000"},
			launch: good, want: StatusAffirming},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(context.Background(), Options{Reference: &ReferenceValues{TDX: tc.ref}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := a.Appraise(context.Background(), claimsOf(t, "tdx", sim.SNPLaunch{}, tc.launch))
			if err != nil {
				t.Fatal(err)
			}
			check(t, res, tc.want, nil, tc.wantReason)
		})
	}
}

// allowed_tcb_statuses: evidence whose tcb_status claim is absent (not checked against Intel's
// TCB info) or not in the list is contraindicated; without the key a missing claim passes and
// only UpToDate is allowed.
func TestAppraiseTDXTCBStatus(t *testing.T) {
	good := sim.TDXLaunch{MRTD: goodMeasurement}
	tests := []struct {
		name, status string // status "": no tcb_status claim
		allowed      []string
		want         Status
		wantReason   string
	}{
		{name: "not required, not checked", want: StatusAffirming},
		{name: "default, up to date", status: "UpToDate", want: StatusAffirming},
		{name: "default, out of date", status: "OutOfDate", want: StatusContraindicated,
			wantReason: "TCB status OutOfDate is not allowed (by default only UpToDate"},
		{name: "default, hardening needed", status: "SWHardeningNeeded", want: StatusContraindicated,
			wantReason: "TCB status SWHardeningNeeded is not allowed (by default only UpToDate"},
		{name: "out of date, allowed", status: "OutOfDate", allowed: []string{"UpToDate", "OutOfDate"}, want: StatusAffirming},
		{name: "out of date, not allowed", status: "OutOfDate", allowed: []string{"UpToDate", "SWHardeningNeeded"}, want: StatusContraindicated,
			wantReason: "TCB status OutOfDate is not allowed (allowed: UpToDate, SWHardeningNeeded)"},
		{name: "required, not checked", allowed: []string{"UpToDate"}, want: StatusContraindicated,
			wantReason: "TCB status not checked against Intel's TCB info"},
		{name: "up to date", status: "UpToDate", allowed: []string{"UpToDate"}, want: StatusAffirming},
		{name: "hardening needed, allowed", status: "SWHardeningNeeded", allowed: []string{"UpToDate", "SWHardeningNeeded"}, want: StatusAffirming},
		{name: "revoked", status: "Revoked", allowed: []string{"UpToDate", "SWHardeningNeeded"}, want: StatusContraindicated,
			wantReason: "TCB status Revoked is not allowed (allowed: UpToDate, SWHardeningNeeded)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := &TDXReference{MRTD: []string{goodHex}, AllowSimulated: true, AllowedTCBStatuses: tc.allowed}
			a, err := New(context.Background(), Options{Reference: &ReferenceValues{TDX: ref}})
			if err != nil {
				t.Fatal(err)
			}
			c := claimsOf(t, "tdx", sim.SNPLaunch{}, good)
			if tc.status != "" {
				c.Raw["tcb_status"] = tc.status
			}
			res, err := a.Appraise(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			var vector map[string]int
			if tc.want == StatusContraindicated {
				vector = map[string]int{"hardware": 96}
			}
			check(t, res, tc.want, vector, tc.wantReason)
		})
	}
}

func TestCustomPolicy(t *testing.T) {
	c := claimsOf(t, "snp", sim.SNPLaunch{}, sim.TDXLaunch{})
	tests := []struct {
		name       string
		policy     string
		want       Status
		wantNewErr string
		wantErr    string
	}{
		{name: "all affirming", policy: "package veil.appraisal\ntrustworthiness_vector := {\"hardware\": 2}\n", want: StatusAffirming},
		{name: "syntax error", policy: "package veil.appraisal\ntrustworthiness_vector := {", wantNewErr: "appraisal policy sha256:"},
		{name: "no vector", policy: "package veil.appraisal\nx := 1\n", wantErr: "trustworthiness_vector is not an object"},
		{name: "unknown claim", policy: "package veil.appraisal\ntrustworthiness_vector := {\"colour\": 2}\n", wantErr: `trustworthiness_vector["colour"]`},
		{name: "out of range", policy: "package veil.appraisal\ntrustworthiness_vector := {\"hardware\": 300}\n", wantErr: "not an integer in -128..127"},
		{name: "other package", policy: "package other\ntrustworthiness_vector := {}\n", wantErr: "trustworthiness_vector is not an object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(context.Background(), Options{Policy: tc.policy})
			if tc.wantNewErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantNewErr) {
					t.Fatalf("New err = %v, want %q", err, tc.wantNewErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res, err := a.Appraise(context.Background(), c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || res.Status != tc.want || !strings.HasPrefix(res.PolicyID, "sha256:") {
				t.Fatalf("res = %+v, %v", res, err)
			}
		})
	}
}

func benchAppraise(b *testing.B, ref *SNPReference) {
	c := claimsOf(b, "snp", sim.SNPLaunch{Measurement: goodMeasurement}, sim.TDXLaunch{})
	a, err := New(context.Background(), Options{Reference: &ReferenceValues{SNP: ref}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Appraise(context.Background(), c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppraiseAffirming is one appraisal with the default policy that affirms.
func BenchmarkAppraiseAffirming(b *testing.B) {
	benchAppraise(b, &SNPReference{Measurements: []string{goodHex}, AllowSimulated: true})
}

// BenchmarkAppraiseWarning also evaluates the reasons.
func BenchmarkAppraiseWarning(b *testing.B) {
	benchAppraise(b, &SNPReference{Measurements: []string{goodHex}})
}
