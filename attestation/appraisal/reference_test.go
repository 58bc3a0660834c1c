package appraisal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const m48 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"

func TestParseReferenceValues(t *testing.T) {
	tests := []struct {
		name, format, in string
		wantErr          string
		check            func(*ReferenceValues) bool
	}{
		{name: "toml", format: "toml", in: `
[snp]
measurements = ["` + m48 + `"]
allow_debug = false
allowed_policy_flags = ["smt"]
minimum_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }
vmpl = 0
[tdx]
mr_td = ["` + m48 + `"]
minimum_tee_tcb_svn = "03000400000000000000000000000000"
`, check: func(r *ReferenceValues) bool {
			return r.SNP.MinimumTCB.Microcode == 115 && *r.SNP.VMPL == 0 && len(r.TDX.MRTD) == 1
		}},
		{name: "json", format: "json", in: `{"snp":{"measurements":["` + m48 + `"],"allow_simulated":true}}`,
			check: func(r *ReferenceValues) bool { return r.SNP.AllowSimulated && r.TDX == nil }},
		{name: "unknown json key", format: "json", in: `{"snp":{"measurment":[]}}`, wantErr: `unknown field "measurment"`},
		{name: "unknown toml key", format: "toml", in: "[snp]\nmeasurment = []\n", wantErr: "unknown keys [snp.measurment]"},
		{name: "short measurement", format: "json", in: `{"snp":{"measurements":["abcd"]}}`, wantErr: `snp.measurements: "abcd" is not 48 bytes of hex`},
		{name: "bad flags and hex, all named", format: "json", in: `{"snp":{"allowed_policy_flags":["turbo"],"required_policy_flags":["smt"]},"tdx":{"rtmr_2":["zz"]}}`,
			wantErr: "unknown flag \"turbo\""},
		{name: "format", format: "yaml", in: "", wantErr: `unknown format "yaml"`},
		{name: "tcb statuses", format: "toml", in: "[tdx]\nallowed_tcb_statuses = [\"UpToDate\", \"SWHardeningNeeded\"]\n",
			check: func(r *ReferenceValues) bool { return len(r.TDX.AllowedTCBStatuses) == 2 }},
		{name: "unknown tcb status", format: "json", in: `{"tdx":{"allowed_tcb_statuses":["UpToDate","Fine"]}}`,
			wantErr: `tdx.allowed_tcb_statuses: unknown TCB status "Fine"`},
		{name: "revoked tcb status", format: "toml", in: "[tdx]\nallowed_tcb_statuses = [\"UpToDate\", \"Revoked\"]\n",
			wantErr: "tdx.allowed_tcb_statuses: Revoked cannot be allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseReferenceValues([]byte(tc.in), tc.format)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(r) {
				t.Fatalf("got %+v, %v", r, err)
			}
		})
	}
	_, err := ParseReferenceValues([]byte(`{"snp":{"allowed_policy_flags":["turbo"],"required_policy_flags":["smt"]},"tdx":{"rtmr_2":["zz"]}}`), "json")
	for _, want := range []string{"turbo", `unknown flag "smt"`, "tdx.rtmr_2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want every failure named (%q)", err, want)
		}
	}
}

func TestLoadReferenceValues(t *testing.T) {
	dir := t.TempDir()
	toml := filepath.Join(dir, "ref.toml")
	if err := os.WriteFile(toml, []byte("[tdx]\nallow_debug = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := LoadReferenceValues(toml)
	if err != nil || !r.TDX.AllowDebug {
		t.Fatalf("%+v, %v", r, err)
	}
	if _, err := LoadReferenceValues(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("missing file loaded")
	}
}
