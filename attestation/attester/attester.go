// Package attester is the guest's view of its TEE: one interface for SNP, TDX and the sim TEE,
// and Detect, which picks SNP or TDX from what the kernel offers. Detect never picks sim: a sim
// attester is only ever made explicitly (sim.NewSNPAttester, sim.NewTDXAttester).
package attester

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/snp"
	"github.com/veil-runtime/veil/attestation/tdx"
)

// Attester produces evidence of the TEE the guest runs in.
type Attester interface {
	// TEE is the KBS protocol's tee name: "snp" or "tdx".
	TEE() string
	// Evidence returns evidence (package evidence) carrying reportData in REPORT_DATA.
	Evidence(ctx context.Context, reportData [64]byte) (json.RawMessage, error)
}

var (
	_ Attester = (*snp.Attester)(nil)
	_ Attester = (*tdx.Attester)(nil)
	_ Attester = (*sim.Attester)(nil)
)

// ErrNoTEE is returned when the guest has no TEE that Detect recognises.
var ErrNoTEE = errors.New("no TEE found")

// Where the kernel exposes TEE guest interfaces.
const (
	TSMReportDir  = "/sys/kernel/config/tsm/report"
	SEVGuestPath  = "/dev/sev-guest"
	TDXGuestPath  = "/dev/tdx_guest"
	tdxGuestPath2 = "/dev/tdx-guest" // older kernels
)

// Env is what Detect inspects; HostEnv is the real one.
type Env interface {
	// Exists reports whether a path exists.
	Exists(path string) bool
	// TSMProvider returns the configfs-tsm report provider ("sev_guest", "tdx_guest").
	TSMProvider() (string, error)
}

// Detect returns the attester of the TEE this guest runs in.
func Detect() (Attester, error) {
	kind, err := DetectKind(HostEnv{})
	if err != nil {
		return nil, err
	}
	if kind == evidence.TEESNP {
		return snp.NewAttester()
	}
	return tdx.NewAttester()
}

// DetectKind returns "snp" or "tdx": configfs-tsm's provider when there is one, else the guest
// device that exists. It never returns "sim".
func DetectKind(env Env) (string, error) {
	if env.Exists(TSMReportDir) {
		if p, err := env.TSMProvider(); err == nil {
			switch p {
			case "sev_guest":
				return evidence.TEESNP, nil
			case "tdx_guest":
				return evidence.TEETDX, nil
			}
		}
	}
	switch {
	case env.Exists(SEVGuestPath):
		return evidence.TEESNP, nil
	case env.Exists(TDXGuestPath), env.Exists(tdxGuestPath2):
		return evidence.TEETDX, nil
	}
	return "", fmt.Errorf("%w: no configfs-tsm provider, %s or %s (the sim TEE is never detected: choose it explicitly)",
		ErrNoTEE, SEVGuestPath, TDXGuestPath)
}

// HostEnv is the running system.
type HostEnv struct{}

// Exists reports whether path exists.
func (HostEnv) Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TSMProvider creates a configfs-tsm report entry, reads its provider and removes the entry.
func (HostEnv) TSMProvider() (string, error) { return TSMProviderAt(TSMReportDir) }

// TSMProviderAt is TSMProvider for the configfs-tsm report directory reportDir.
func TSMProviderAt(reportDir string) (string, error) {
	dir := filepath.Join(reportDir, "veil-probe-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("configfs-tsm: %w", err)
	}
	defer os.Remove(dir)
	b, err := os.ReadFile(filepath.Join(dir, "provider"))
	if err != nil {
		return "", fmt.Errorf("configfs-tsm: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
