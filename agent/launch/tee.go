package launch

import (
	"context"
	"errors"
	"os"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/initsys"
	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/attestation/sim/psp"
)

// teePaths are where the guest kernel shows a TEE.
type teePaths struct {
	sevGuest  string // the SEV-SNP guest device
	tdxGuest  string // the TDX guest device
	tsmReport string // configfs-tsm's report directory
	cmdline   string // the kernel command line (veil.tee=sim selects the simulated TEE)
}

var defaultTEEPaths = teePaths{
	sevGuest:  attester.SEVGuestPath,
	tdxGuest:  attester.TDXGuestPath,
	tsmReport: attester.TSMReportDir,
	cmdline:   "/proc/cmdline",
}

// DetectTEE returns the guest's TEE kind, as the launch check and GetGuestDetails use it:
// api.TEESNP, TEETDX, TEESim or TEENone.
func DetectTEE(ctx context.Context) string { return detectTEE(ctx, defaultTEEPaths) }

// detectTEE returns the hardware TEE when there is one, else "sim" when the kernel command
// line selects the simulated TEE (veil.tee=sim), else "none". Hardware wins: on a real TEE
// the host must not be able to swap the launch measurement for one it hands the guest.
func detectTEE(ctx context.Context, p teePaths) string {
	hw := detectHardwareTEE(ctx, p)
	if v, ok := initsys.ParseCmdline(readFile(p.cmdline))[psp.KernelParam]; ok {
		switch {
		case v != psp.KernelParamSim:
			log.G(ctx).Warnf("%s=%s is not a TEE the guest can select (only %s); ignored", psp.KernelParam, v, psp.KernelParamSim)
		case hw != api.TEENone:
			log.G(ctx).Warnf("%s=%s ignored: this guest runs in a real %s TEE", psp.KernelParam, v, hw)
		default:
			return api.TEESim
		}
	}
	return hw
}

// readFile returns a file's contents, or "" when it cannot be read.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// detectHardwareTEE returns "snp" or "tdx" as attestation/attester.DetectKind sees the guest
// (the same rules the attester that produces evidence follows, so the launch check and the
// evidence never disagree on the TEE), else "none".
func detectHardwareTEE(ctx context.Context, p teePaths) string {
	kind, err := attester.DetectKind(teeEnv{p})
	if err != nil {
		if !errors.Is(err, attester.ErrNoTEE) {
			log.G(ctx).WithError(err).Warn("TEE detection")
		}
		return api.TEENone
	}
	return kind
}

// teeEnv is attester.Env on teePaths, so tests can point detection at a temporary directory.
// Paths it does not map (an older kernel's TDX device name) are looked up as they are.
type teeEnv struct{ p teePaths }

func (e teeEnv) Exists(path string) bool {
	switch path {
	case attester.TSMReportDir:
		path = e.p.tsmReport
	case attester.SEVGuestPath:
		path = e.p.sevGuest
	case attester.TDXGuestPath:
		path = e.p.tdxGuest
	}
	_, err := os.Stat(path)
	return err == nil
}

func (e teeEnv) TSMProvider() (string, error) { return attester.TSMProviderAt(e.p.tsmReport) }
