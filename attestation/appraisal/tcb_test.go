package appraisal

import (
	"context"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/verifier"
)

// From the quote to the decision: a sim TDX quote verified against sim-signed Intel collateral
// whose TCB info rates the platform OutOfDate (advisory INTEL-SA-00837) is refused by default
// and affirmed when allowed_tcb_statuses lists OutOfDate; an UpToDate platform is affirmed.
func TestAppraiseTDXTCBStatusVerified(t *testing.T) {
	claimsOf(t, "tdx", sim.SNPLaunch{}, sim.TDXLaunch{}) // makes simOnce.a
	a := simOnce.a
	now := time.Now()
	p, err := a.TDX.PCS(now)
	if err != nil {
		t.Fatal(err)
	}
	info, err := a.TDX.TCBInfo(now)
	if err != nil {
		t.Fatal(err)
	}
	qe, err := a.TDX.QEIdentity(now)
	if err != nil {
		t.Fatal(err)
	}
	uptodate := t.TempDir()
	if err := p.WriteDir(uptodate, info, qe, sim.CRLOptions{}, sim.CRLOptions{}); err != nil {
		t.Fatal(err)
	}
	own := info.Levels[0]
	own.Status, own.Advisories = "OutOfDate", []string{"INTEL-SA-00837"}
	newer := own
	newer.SGX[0]++
	newer.Status, newer.Advisories = "UpToDate", nil
	info.Levels = []sim.TCBLevel{newer, own}
	outofdate := t.TempDir()
	if err := p.WriteDir(outofdate, info, qe, sim.CRLOptions{}, sim.CRLOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir  string
		allowed    []string
		want       Status
		wantReason string
	}{
		{name: "up to date, default", dir: uptodate, want: StatusAffirming},
		{name: "out of date, default", dir: outofdate, want: StatusContraindicated,
			wantReason: "TCB status OutOfDate is not allowed (by default only UpToDate"},
		{name: "out of date, allowed", dir: outofdate, allowed: []string{"UpToDate", "OutOfDate"}, want: StatusAffirming},
		{name: "out of date, SW hardening allowed", dir: outofdate, allowed: []string{"UpToDate", "SWHardeningNeeded"},
			want: StatusContraindicated, wantReason: "TCB status OutOfDate is not allowed (allowed: UpToDate, SWHardeningNeeded)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := verifier.New(verifier.Config{SimTDXRoots: a.TDXRoots(), CollateralDir: tc.dir, CheckRevocations: true})
			if err != nil {
				t.Fatal(err)
			}
			att, err := sim.NewTDXAttester(a, sim.TDXLaunch{MRTD: goodMeasurement})
			if err != nil {
				t.Fatal(err)
			}
			rd := [64]byte{2}
			ev, err := att.Evidence(context.Background(), rd)
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.Verify(context.Background(), verifier.Input{TEE: "tdx", Evidence: ev, ReportData: rd})
			if err != nil {
				t.Fatal(err)
			}
			ref := &TDXReference{MRTD: []string{goodHex}, AllowSimulated: true, AllowedTCBStatuses: tc.allowed}
			ap, err := New(context.Background(), Options{Reference: &ReferenceValues{TDX: ref}})
			if err != nil {
				t.Fatal(err)
			}
			res, err := ap.Appraise(context.Background(), c)
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
