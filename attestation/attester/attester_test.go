package attester

import (
	"errors"
	"strings"
	"testing"
)

type fakeEnv struct {
	paths    map[string]bool
	provider string
}

func (f fakeEnv) Exists(p string) bool { return f.paths[p] }

func (f fakeEnv) TSMProvider() (string, error) {
	if f.provider == "" {
		return "", errors.New("no provider")
	}
	return f.provider, nil
}

func TestDetectKind(t *testing.T) {
	tests := []struct {
		name    string
		env     fakeEnv
		want    string
		wantErr string
	}{
		{name: "configfs snp", env: fakeEnv{paths: map[string]bool{TSMReportDir: true}, provider: "sev_guest"}, want: "snp"},
		{name: "configfs tdx", env: fakeEnv{paths: map[string]bool{TSMReportDir: true}, provider: "tdx_guest"}, want: "tdx"},
		{name: "sev-guest device", env: fakeEnv{paths: map[string]bool{SEVGuestPath: true}}, want: "snp"},
		{name: "tdx device", env: fakeEnv{paths: map[string]bool{TDXGuestPath: true}}, want: "tdx"},
		{name: "configfs without provider, device", env: fakeEnv{paths: map[string]bool{TSMReportDir: true, SEVGuestPath: true}}, want: "snp"},
		{name: "unknown provider", env: fakeEnv{paths: map[string]bool{TSMReportDir: true}, provider: "arm_cca_guest"}, wantErr: "no TEE found"},
		{name: "nothing: never sim", env: fakeEnv{}, wantErr: "sim TEE is never detected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DetectKind(tc.env)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrNoTEE) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DetectKind = %q, %v; want %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DetectKind = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// On a machine without a TEE (like the CI machines), Detect finds nothing, and never sim.
func TestDetectHere(t *testing.T) {
	a, err := Detect()
	if err == nil {
		t.Skipf("this machine has a TEE guest interface (%s): nothing to check", a.TEE())
	}
	if !errors.Is(err, ErrNoTEE) {
		t.Logf("Detect: %v (a TEE interface exists but is not usable here)", err)
	}
}
