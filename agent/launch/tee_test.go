package launch

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/sim/psp"
)

// TestTEENames: the TEE kinds the guest reports are the evidence's tee names (detection
// returns attester.DetectKind's) and veil.tee's value for the sim TEE.
func TestTEENames(t *testing.T) {
	if api.TEESNP != evidence.TEESNP || api.TEETDX != evidence.TEETDX || api.TEESim != psp.KernelParamSim {
		t.Errorf("api's TEE kinds %s %s %s; evidence's %s %s, veil.tee's %s",
			api.TEESNP, api.TEETDX, api.TEESim, evidence.TEESNP, evidence.TEETDX, psp.KernelParamSim)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDetectTEE(t *testing.T) {
	dir := t.TempDir()
	p := teePaths{
		sevGuest:  filepath.Join(dir, "sev-guest"),
		tdxGuest:  filepath.Join(dir, "tdx_guest"),
		tsmReport: filepath.Join(dir, "tsm", "report"),
	}
	ctx := context.Background()
	if got := detectTEE(ctx, p); got != "none" {
		t.Fatalf("no device: detectTEE = %q, want none", got)
	}
	must(t, os.MkdirAll(p.tsmReport, 0o755)) // a plain directory names no provider
	if got := detectTEE(ctx, p); got != "none" {
		t.Fatalf("tsm without provider: detectTEE = %q, want none", got)
	}
	must(t, os.WriteFile(p.tdxGuest, nil, 0o600))
	if got := detectTEE(ctx, p); got != "tdx" {
		t.Fatalf("tdx_guest: detectTEE = %q, want tdx", got)
	}
	must(t, os.WriteFile(p.sevGuest, nil, 0o600))
	if got := detectTEE(ctx, p); got != "snp" {
		t.Fatalf("sev-guest: detectTEE = %q, want snp", got)
	}
	// veil.tee=sim selects the simulated TEE, but never over real hardware.
	p.cmdline = filepath.Join(dir, "cmdline")
	must(t, os.WriteFile(p.cmdline, []byte("console=hvc0 veil.tee=sim quiet\n"), 0o644))
	if got := detectTEE(ctx, p); got != "snp" {
		t.Fatalf("veil.tee=sim on SNP: detectTEE = %q, want snp", got)
	}
	must(t, os.Remove(p.sevGuest))
	must(t, os.Remove(p.tdxGuest))
	if got := detectTEE(ctx, p); got != "sim" {
		t.Fatalf("veil.tee=sim: detectTEE = %q, want sim", got)
	}
	must(t, os.WriteFile(p.cmdline, []byte("console=hvc0 veil.tee=snp\n"), 0o644))
	if got := detectTEE(ctx, p); got != "none" {
		t.Fatalf("veil.tee=snp: detectTEE = %q, want none (only sim can be selected)", got)
	}
}
