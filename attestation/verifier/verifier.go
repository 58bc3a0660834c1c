// Package verifier checks TEE evidence: that it is signed by a chain to a trusted root (AMD's
// ARK for SNP, Intel's SGX root for TDX, or a configured sim root), that it is bound to the KBS
// session (REPORT_DATA) and to the initdata (HOST_DATA / MRCONFIGID), and returns the claims
// the evidence makes. Deciding whether those claims are good enough is appraisal's job.
package verifier

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/snp"
	"github.com/veil-runtime/veil/attestation/tdx"
)

// Errors a verification failure wraps (errors.Is), by kind.
var (
	// ErrUnknownTEE: the input names a TEE this verifier does not know.
	ErrUnknownTEE = errors.New("unknown TEE")
	// ErrMalformed: the evidence does not parse.
	ErrMalformed = errors.New("malformed evidence")
	// ErrUntrusted: the evidence is not signed by a chain to a trusted root, or is inconsistent
	// with its own certificates.
	ErrUntrusted = errors.New("evidence is not trusted")
	// ErrMismatch: trusted evidence that carries other values than expected (report data,
	// initdata digest).
	ErrMismatch = errors.New("evidence does not match the expected values")
)

// Input is one piece of evidence to verify.
type Input struct {
	// TEE is "snp" or "tdx", as the KBS client announced it.
	TEE string
	// Evidence is the evidence JSON (see package evidence).
	Evidence json.RawMessage
	// ReportData is the REPORT_DATA the evidence must carry (attestation/binding.ReportData).
	ReportData [64]byte
	// InitDataDigest is the initdata digest the evidence must carry in HOST_DATA (SNP, 32
	// bytes) or MRCONFIGID (TDX, 48 bytes), zero-padded or truncated. nil: not checked.
	InitDataDigest []byte
}

// Claims is what verified evidence says.
type Claims struct {
	// TEE is "snp" or "tdx".
	TEE string
	// Simulated is true when the evidence verified against a configured sim root.
	Simulated bool
	// Measurement is SNP MEASUREMENT or TDX MRTD.
	Measurement []byte
	// HostData is SNP HOST_DATA or TDX MRCONFIGID.
	HostData []byte
	// ReportData is REPORT_DATA (equal to Input.ReportData).
	ReportData []byte
	// InitDataChecked is true when HostData was compared with Input.InitDataDigest.
	InitDataChecked bool
	// Debug is the SNP policy's DEBUG bit or TDX TDATTRIBUTES.DEBUG.
	Debug bool
	// SNP holds the SNP-specific claims (nil for TDX).
	SNP *SNPClaims
	// TDX holds the TDX-specific claims (nil for SNP).
	TDX *TDXClaims
	// Raw holds every claim as JSON-friendly values, for Rego and the token (keys in
	// docs/attestation.md).
	Raw map[string]any
}

// Verifier checks evidence.
type Verifier interface {
	Verify(ctx context.Context, in Input) (*Claims, error)
}

// HTTPSGetter fetches a URL: AMD KDS certificates or Intel PCS collateral. Inject one to
// control or fake the network.
type HTTPSGetter interface {
	Get(ctx context.Context, url string) (http.Header, []byte, error)
}

// Config is the verifier's trust and network policy. The zero value trusts AMD's and Intel's
// roots, never sim roots, and never touches the network.
type Config struct {
	// SNPRoots are the trusted AMD roots; nil means AMD's (Milan, Genoa, Turin; VCEK and VLEK),
	// as embedded in go-sev-guest.
	SNPRoots *snp.Roots
	// TDXRoots are the trusted roots of PCK chains; nil means Intel's SGX Root CA.
	TDXRoots *x509.CertPool
	// SimSNPRoots and SimTDXRoots are sim roots (sim.Authority.SNPRoots/TDXRoots); nil refuses
	// simulated evidence of that TEE.
	SimSNPRoots *snp.Roots
	SimTDXRoots *x509.CertPool
	// FetchCollateral lets the verifier fetch what the evidence lacks: the VCEK and ASK/ARK from
	// AMD's KDS, TDX collateral (TCB info, QE identity) from Intel's PCS; with TDX collateral the
	// verifier finds the quote's TCB status (claim tcb_status; Revoked refuses). Off by default.
	FetchCollateral bool
	// CheckRevocations checks revocations. SNP: the CRL of the chain's product line (AMD KDS
	// form: DER, signed by the ARK) must be signed by the trusted ARK, current (thisUpdate ≤
	// now ≤ nextUpdate), and list neither the ASK/ASVK nor the VCEK/VLEK; it comes from
	// CollateralDir, else (FetchCollateral) from KDS, kept until its nextUpdate. TDX: the PCK
	// CRL (signed by the PCK chain's intermediate, current) must not list the PCK certificate,
	// the root CA CRL (signed by the root, current) neither the intermediate nor the TCB signing
	// certificate (from CollateralDir or PCS). It needs FetchCollateral or CollateralDir.
	CheckRevocations bool
	// CollateralDir is a directory of collateral mirroring the vendors' URL paths (path, then
	// "?query" if any), for offline checks: DIR/vcek/v1/<product line>/crl is the CRL
	// https://kdsintf.amd.com/vcek/v1/<product line>/crl serves (SNP, with CheckRevocations);
	// DIR/tdx/certification/v4/tcb?fmspc=<fmspc>, DIR/tdx/certification/v4/qe/identity,
	// DIR/sgx/certification/v4/pckcrl?ca=<ca>&encoding=der and DIR/IntelSGXRootCA.der are
	// Intel PCS's responses, each with its headers (issuer chains) in FILE.headers as curl -D
	// writes them. When it is set, TDX evidence is always checked against that collateral, as
	// with FetchCollateral (files missing from it are fetched when FetchCollateral is set).
	// "" means none.
	CollateralDir string
	// Getter is used when FetchCollateral is set; nil means net/http with a 30 s timeout.
	Getter HTTPSGetter
	// Now returns the time certificates are checked at; nil means time.Now.
	Now func() time.Time
	// ChainCacheSize bounds the cache of certificate chains already verified (keyed by the
	// exact certificate bytes), so that repeat evidence from one platform only costs its own
	// signature checks. 0 means 256; negative disables the cache. Never used with
	// CheckRevocations.
	ChainCacheSize int
}

type verifier struct {
	cfg   Config
	cache *chainCache
	crls  *crlSource
	pcs   *pcsCache // Intel PCS responses fetched online (FetchCollateral)
}

// New returns a verifier for "snp" and "tdx" evidence.
func New(cfg Config) (Verifier, error) {
	if cfg.CheckRevocations && !cfg.FetchCollateral && cfg.CollateralDir == "" {
		return nil, errors.New("verifier: CheckRevocations needs FetchCollateral or CollateralDir (where CRLs come from)")
	}
	if cfg.CollateralDir != "" {
		if fi, err := os.Stat(cfg.CollateralDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("verifier: CollateralDir %q is not a directory (%v)", cfg.CollateralDir, err)
		}
	}
	if cfg.SNPRoots == nil {
		cfg.SNPRoots = snp.DefaultRoots()
	} else if cfg.SNPRoots.Empty() {
		// go-sev-guest falls back to AMD's roots when given none: refuse the ambiguity.
		return nil, errors.New("verifier: SNPRoots is empty (nil means AMD's roots)")
	}
	if cfg.TDXRoots == nil {
		cfg.TDXRoots = tdx.DefaultRoots()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FetchCollateral && cfg.Getter == nil {
		cfg.Getter = httpGetter{client: &http.Client{Timeout: 30 * time.Second}}
	}
	size := cfg.ChainCacheSize
	if size == 0 {
		size = 256
	}
	v := &verifier{cfg: cfg}
	if cfg.FetchCollateral {
		v.pcs = newPCSCache(cfg.Getter, cfg.Now)
	}
	if cfg.CheckRevocations {
		var g HTTPSGetter
		if cfg.FetchCollateral {
			g = cfg.Getter
		}
		v.crls = newCRLSource(cfg.CollateralDir, g)
	}
	if size > 0 && !cfg.CheckRevocations {
		v.cache = newChainCache(size)
	}
	return v, nil
}

// Verify dispatches on in.TEE.
func (v *verifier) Verify(ctx context.Context, in Input) (*Claims, error) {
	switch in.TEE {
	case evidence.TEESNP:
		return v.verifySNP(ctx, in)
	case evidence.TEETDX:
		return v.verifyTDX(ctx, in)
	default:
		return nil, fmt.Errorf("%w %q (this verifier knows snp and tdx)", ErrUnknownTEE, in.TEE)
	}
}

// mismatch returns an ErrMismatch error naming a field and both values, or nil when equal.
func mismatch(field string, got, want []byte) error {
	if string(got) == string(want) {
		return nil
	}
	return fmt.Errorf("%w: %s is %x, want %x", ErrMismatch, field, got, want)
}
