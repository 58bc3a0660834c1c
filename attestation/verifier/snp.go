package verifier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	sevverify "github.com/google/go-sev-guest/verify"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/snp"
	"github.com/veil-runtime/veil/initdata"
)

// snpCheck is one SNP verification in progress.
type snpCheck struct {
	ev        evidence.SNP
	att       *spb.Attestation
	signer    string // "VCEK" or "VLEK"
	key       abi.ReportSigner
	ekDER     []byte
	roots     *snp.Roots
	simulated bool
}

func (v *verifier) verifySNP(ctx context.Context, in Input) (*Claims, error) {
	ev, err := evidence.ParseSNP(in.Evidence)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c := &snpCheck{ev: *ev}
	att, err := snp.Attestation(ev)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c.att = att
	if c.signer, err = snp.ReportSigner(att.GetReport()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c.key, c.ekDER = abi.VcekReportSigner, att.GetCertificateChain().GetVcekCert()
	if c.signer == evidence.CertVLEK {
		c.key, c.ekDER = abi.VlekReportSigner, att.GetCertificateChain().GetVlekCert()
	}
	if err := v.snpChainAndSignature(ctx, c); err != nil {
		return nil, err
	}
	if err := validateSNP(att); err != nil {
		return nil, fmt.Errorf("%w: SEV-SNP report is inconsistent with its %s: %w", ErrUntrusted, c.signer, err)
	}
	report := att.GetReport()
	var errs []error
	errs = append(errs, mismatch("REPORT_DATA", report.GetReportData(), in.ReportData[:]))
	if in.InitDataDigest != nil {
		want := initdata.SNPHostData(in.InitDataDigest)
		errs = append(errs, mismatch("HOST_DATA (initdata digest)", report.GetHostData(), want))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("SEV-SNP evidence: %w", err)
	}
	return snpClaims(c, in.InitDataDigest != nil), nil
}

// snpRoots picks the roots the endorsement key must chain to: the sim roots for a sim chain
// (refused when none are configured), AMD's (or the configured real roots) otherwise.
func (v *verifier) snpRoots(c *snpCheck) error {
	c.roots = v.cfg.SNPRoots
	if len(c.ekDER) == 0 {
		if v.cfg.FetchCollateral {
			return nil
		}
		return fmt.Errorf("%w: SEV-SNP evidence carries no %s certificate and fetching from AMD KDS is off", ErrUntrusted, c.signer)
	}
	ek, err := x509.ParseCertificate(c.ekDER)
	if err != nil {
		return fmt.Errorf("%w: %s certificate: %w", ErrMalformed, c.signer, err)
	}
	if !sim.IsSimulatedCert(ek) {
		return nil
	}
	if v.cfg.SimSNPRoots.Empty() {
		return fmt.Errorf("%w: simulated SEV-SNP evidence (its %s is marked %q) but no sim root is configured", ErrUntrusted, c.signer, sim.Marker)
	}
	c.roots, c.simulated = v.cfg.SimSNPRoots, true
	return nil
}

// snpChainAndSignature checks the endorsement key's chain (or finds it in the cache) and the
// report's signature.
func (v *verifier) snpChainAndSignature(ctx context.Context, c *snpCheck) error {
	now := v.cfg.Now()
	var line string
	if fms := c.att.GetReport().GetCpuid1EaxFms(); fms != 0 {
		line = kds.ProductLineFromFms(fms)
	}
	key := cacheKey([]byte("snp"), c.ekDER, []byte(c.signer), []byte(line))
	if e, ok := v.cache.get(key, now); ok && len(c.ekDER) > 0 {
		c.simulated = e.simulated
		if err := sevverify.SnpReportSignature(c.ev.Report, e.leaf); err != nil {
			return fmt.Errorf("%w: SEV-SNP %w", ErrUntrusted, err)
		}
		return nil
	}
	if err := v.snpRoots(c); err != nil {
		return err
	}
	opts := &sevverify.Options{
		TrustedRoots:        c.roots.TrustedRoots(),
		DisableCertFetching: !v.cfg.FetchCollateral,
		Now:                 now, // revocations: snpRevocation, which also checks the VCEK and staleness
	}
	if v.cfg.FetchCollateral {
		opts.Getter = sevGetter{ctx: ctx, g: v.cfg.Getter}
	}
	if err := sevverify.SnpAttestationContext(ctx, c.att, opts); err != nil {
		return fmt.Errorf("%w: SEV-SNP: %w", ErrUntrusted, err)
	}
	if v.cfg.CheckRevocations {
		if err := v.snpRevocation(ctx, c, now); err != nil {
			return err
		}
	}
	if len(c.ekDER) > 0 {
		v.cacheSNPChain(key, c, now)
	}
	return nil
}

// cacheSNPChain remembers a verified endorsement key with the validity window of its chain.
func (v *verifier) cacheSNPChain(key [32]byte, c *snpCheck, now time.Time) {
	if v.cache == nil {
		return
	}
	ek, err := x509.ParseCertificate(c.ekDER)
	if err != nil {
		return
	}
	for _, roots := range c.roots.TrustedRoots() {
		for _, root := range roots {
			opts := root.X509Options(now, c.key)
			if opts == nil {
				continue
			}
			chains, err := ek.Verify(*opts)
			if nb, na, ok := validity(chains); err == nil && ok {
				v.cache.put(key, chainEntry{leaf: ek, simulated: c.simulated, notBefore: nb, notAfter: na})
				return
			}
		}
	}
}

// validateSNP checks what go-sev-guest's validate package checks beyond signatures, with a
// policy that accepts every guest policy: the report's TCBs against its VCEK's (REPORTED_TCB
// equal to the certificate's, not above CURRENT_TCB), committed versions not above current, and
// CHIP_ID equal to the VCEK's HWID. Policy decisions (debug, minimum TCB) belong to appraisal.
func validateSNP(att *spb.Attestation) error {
	return validate.SnpAttestation(att, &validate.Options{
		GuestPolicy: abi.SnpPolicy{
			ABIMajor: 0, ABIMinor: 0, SMT: true, MigrateMA: true, Debug: true, CXLAllowed: true,
		},
		PermitProvisionalFirmware: true,
	})
}
