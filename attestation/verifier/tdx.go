package verifier

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	tdxverify "github.com/google/go-tdx-guest/verify"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/tdx"
	"github.com/veil-runtime/veil/initdata"
)

// tdxCheck is one TDX verification in progress.
type tdxCheck struct {
	quote     *pb.QuoteV4
	chain     []*x509.Certificate // PCK, intermediate, root
	pool      *x509.CertPool
	simulated bool
	// tcb is the quote's TCB status by Intel's TCB info and QE identity; nil when no
	// collateral was used.
	tcb *tdxTCB
}

func (v *verifier) verifyTDX(ctx context.Context, in Input) (*Claims, error) {
	ev, err := evidence.ParseTDX(in.Evidence)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c := &tdxCheck{}
	if c.quote, err = tdx.ParseQuote(ev.Quote); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if c.chain, err = tdx.PCKChain(c.quote); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	c.pool = v.cfg.TDXRoots
	if sim.IsSimulatedCert(c.chain[2]) {
		if v.cfg.SimTDXRoots == nil {
			return nil, fmt.Errorf("%w: simulated TDX evidence (its PCK root is marked %q) but no sim root is configured", ErrUntrusted, sim.Marker)
		}
		c.pool, c.simulated = v.cfg.SimTDXRoots, true
	}
	now := v.cfg.Now()
	if err := v.tdxChainAndSignature(c, now); err != nil {
		return nil, err
	}
	if err := v.tdxTCBCheck(ctx, c, now); err != nil {
		return nil, err
	}
	body := c.quote.GetTdQuoteBody()
	var errs []error
	errs = append(errs, mismatch("REPORTDATA", body.GetReportData(), in.ReportData[:]))
	if in.InitDataDigest != nil {
		want := initdata.TDXMRConfigID(in.InitDataDigest)
		errs = append(errs, mismatch("MRCONFIGID (initdata digest)", body.GetMrConfigId(), want))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("TDX evidence: %w", err)
	}
	return tdxClaims(c, in.InitDataDigest != nil), nil
}

// tdxChainAndSignature checks the PCK chain to c.pool (or finds it in the cache), the QE report
// and the quote signature, with go-tdx-guest.
func (v *verifier) tdxChainAndSignature(c *tdxCheck, now time.Time) error {
	simulated := []byte{0}
	if c.simulated {
		simulated[0] = 1
	}
	key := cacheKey([]byte("tdx"), c.chain[0].Raw, c.chain[1].Raw, c.chain[2].Raw, simulated)
	if e, ok := v.cache.get(key, now); ok {
		if err := quoteSignatures(c.quote, e.leaf); err != nil {
			return fmt.Errorf("%w: TDX quote: %w", ErrUntrusted, err)
		}
		return nil
	}
	if err := tdxverify.TdxQuote(c.quote, &tdxverify.Options{TrustedRoots: c.pool, Now: now}); err != nil {
		return fmt.Errorf("%w: TDX quote: %w", ErrUntrusted, err)
	}
	v.cacheTDXChain(key, c, now)
	return nil
}

// tdxTCBCheck checks the quote against Intel's PCS collateral (tdxPCSCollateral) from the
// collateral directory or PCS and sets c.tcb. A Revoked status refuses the evidence; every
// other status goes into the claims for appraisal to judge.
func (v *verifier) tdxTCBCheck(ctx context.Context, c *tdxCheck, now time.Time) error {
	var g pcsGetter
	switch {
	case v.cfg.CollateralDir != "":
		var next HTTPSGetter
		if v.cfg.FetchCollateral {
			next = v.pcs
		}
		g = tdxDirGetter{ctx: ctx, dir: v.cfg.CollateralDir, next: next}
	case v.cfg.FetchCollateral:
		g = tdxGetter{ctx: ctx, g: v.pcs}
	default:
		return nil
	}
	exts, err := pcs.PckCertificateExtensions(c.chain[0])
	if err != nil {
		return fmt.Errorf("%w: TDX PCK certificate extensions: %w", ErrMalformed, err)
	}
	col, err := v.tdxPCSCollateral(ctx, g, c, exts, now)
	if err != nil {
		return fmt.Errorf("%w: TDX collateral: %w", ErrUntrusted, err)
	}
	qe := c.quote.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport()
	tcb, err := matchTDXTCB(&col.tcbInfo, &col.qeIdentity, c.quote.GetTdQuoteBody(), qe, exts)
	if err != nil {
		return fmt.Errorf("%w: TDX TCB: %w", ErrUntrusted, err)
	}
	if tcb.Status == statusRevoked {
		return fmt.Errorf("%w: %w: TDX TCB status is Revoked (platform %s, TDX module %q, QE %s; advisories %v)",
			ErrUntrusted, ErrRevoked, tcb.Platform, tcb.Module, tcb.QE, tcb.AdvisoryIDs)
	}
	c.tcb = tcb
	return nil
}

func (v *verifier) cacheTDXChain(key [32]byte, c *tdxCheck, now time.Time) {
	if v.cache == nil {
		return
	}
	inter := x509.NewCertPool()
	inter.AddCert(c.chain[1])
	chains, err := c.chain[0].Verify(x509.VerifyOptions{Roots: c.pool, Intermediates: inter, CurrentTime: now})
	if nb, na, ok := validity(chains); err == nil && ok {
		v.cache.put(key, chainEntry{leaf: c.chain[0], simulated: c.simulated, notBefore: nb, notAfter: na})
	}
}

// quoteSignatures checks, for a PCK certificate already verified, what go-tdx-guest checks after
// the chain: the QE report's signature by the PCK key, that the QE report binds the attestation
// key (REPORTDATA = SHA-256(key || QE auth data) || zeros), and the quote's signature by that key.
func quoteSignatures(q *pb.QuoteV4, pck *x509.Certificate) error {
	sd := q.GetSignedData()
	qe := sd.GetCertificationData().GetQeReportCertificationData()
	rawQE, err := abi.EnclaveReportToAbiBytes(qe.GetQeReport())
	if err != nil {
		return err
	}
	qeSig, err := abi.SignatureToDER(qe.GetQeReportSignature())
	if err != nil {
		return err
	}
	if err := pck.CheckSignature(x509.ECDSAWithSHA256, rawQE, qeSig); err != nil {
		return fmt.Errorf("QE report signature: %w", err)
	}
	attKey := sd.GetEcdsaAttestationKey()
	bound := sha256.Sum256(append(bytes.Clone(attKey), qe.GetQeAuthData().GetData()...))
	if want := append(bound[:], make([]byte, 32)...); !bytes.Equal(qe.GetQeReport().GetReportData(), want) {
		return errors.New("QE report does not bind the attestation key")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append([]byte{4}, attKey...))
	if err != nil {
		return fmt.Errorf("attestation key: %w", err)
	}
	header, err := abi.HeaderToAbiBytes(q.GetHeader())
	if err != nil {
		return err
	}
	body, err := abi.TdQuoteBodyToAbiBytes(q.GetTdQuoteBody())
	if err != nil {
		return err
	}
	sig, err := abi.SignatureToDER(sd.GetSignature())
	if err != nil {
		return err
	}
	digest := sha256.Sum256(append(header, body...))
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return errors.New("quote signature does not verify with the attestation key")
	}
	return nil
}

// TDXClaims are the fields of a verified TDX quote.
type TDXClaims struct {
	MRTD, MRConfigID, MROwner, MROwnerConfig []byte
	RTMRs                                    [4][]byte
	TDAttributes, XFAM                       []byte
	TEETCBSVN, MRSeam, MRSignerSeam          []byte
	SeamAttributes                           []byte
	// FMSPC is the platform's FMSPC from the PCK certificate, hex.
	FMSPC string
	// TCBStatus is the quote's TCB status by Intel's TCB info and QE identity (Intel's names:
	// UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded,
	// OutOfDate, OutOfDateConfigurationNeeded; Revoked is refused), when the quote was checked
	// against Intel PCS collateral (FetchCollateral, CollateralDir); "" when it was not.
	TCBStatus string
	// TCBDate is the date of the matching TCB level; AdvisoryIDs the Intel security advisories
	// of the matching levels (platform, TDX module, QE). Set with TCBStatus.
	TCBDate     string
	AdvisoryIDs []string
}

func tdxClaims(c *tdxCheck, initDataChecked bool) *Claims {
	b := c.quote.GetTdQuoteBody()
	t := &TDXClaims{
		MRTD: b.GetMrTd(), MRConfigID: b.GetMrConfigId(), MROwner: b.GetMrOwner(), MROwnerConfig: b.GetMrOwnerConfig(),
		TDAttributes: b.GetTdAttributes(), XFAM: b.GetXfam(), TEETCBSVN: b.GetTeeTcbSvn(),
		MRSeam: b.GetMrSeam(), MRSignerSeam: b.GetMrSignerSeam(), SeamAttributes: b.GetSeamAttributes(),
	}
	for i, r := range b.GetRtmrs() {
		if i < len(t.RTMRs) {
			t.RTMRs[i] = r
		}
	}
	if exts, err := pcs.PckCertificateExtensions(c.chain[0]); err == nil {
		t.FMSPC = exts.FMSPC
	}
	if c.tcb != nil {
		t.TCBStatus, t.TCBDate, t.AdvisoryIDs = c.tcb.Status, c.tcb.TCBDate, c.tcb.AdvisoryIDs
	}
	claims := &Claims{
		TEE: "tdx", Simulated: c.simulated, Measurement: t.MRTD, HostData: t.MRConfigID,
		ReportData: b.GetReportData(), InitDataChecked: initDataChecked,
		Debug: len(t.TDAttributes) > 0 && t.TDAttributes[0]&1 != 0, TDX: t,
	}
	claims.Raw = tdxRaw(claims, t, c.quote.GetHeader())
	return claims
}
