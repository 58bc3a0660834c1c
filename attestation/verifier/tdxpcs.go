package verifier

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-tdx-guest/pcs"
)

// Names in Intel PCS responses (API v4) and certificates.
const (
	headerTCBInfoChain = "Tcb-Info-Issuer-Chain"
	headerQEIDChain    = "Sgx-Enclave-Identity-Issuer-Chain"
	headerPCKCRLChain  = "Sgx-Pck-Crl-Issuer-Chain"
	tcbSigningCN       = "Intel SGX TCB Signing"
	tcbInfoIDTDX       = "TDX"
	tcbInfoVersion     = 3
	qeIdentityIDTDX    = "TD_QE"
	qeIdentityVersion  = 2
)

// pcsGetter is how the collateral reaches the verifier: tdxDirGetter (the collateral
// directory, falling back to PCS when fetching is on) or tdxGetter (PCS). src names where the
// response came from (the directory's file, or link), for errors an operator can act on.
type pcsGetter interface {
	Get(link string) (header map[string][]string, body []byte, src string, err error)
}

// tdxCollateral is Intel PCS collateral for one quote, verified.
type tdxCollateral struct {
	tcbInfo    pcs.TcbInfo
	qeIdentity pcs.EnclaveIdentity
}

// tdxPCSCollateral gets the TCB info of the PCK certificate's FMSPC and the TD QE identity and
// checks each: the issuer chain from its response header (TCB signing certificate, root) must
// verify to the roots the PCK chain verified to, the signing certificate be Intel's "Intel SGX
// TCB Signing"; the ECDSA signature (hex r||s) over the exact bytes of the "tcbInfo" or
// "enclaveIdentity" object must verify with it; the id and version be TDX's (TDX v3, TD_QE v2);
// issueDate ≤ now ≤ nextUpdate. With CheckRevocations the PCK CRL of the PCK's CA must be issued
// and signed by the PCK chain's intermediate and current, and not list the PCK certificate; the
// root CA CRL (the root's distribution point) signed by the root and current, and list neither
// the PCK chain's intermediate nor the TCB signing certificate.
func (v *verifier) tdxPCSCollateral(ctx context.Context, g pcsGetter, c *tdxCheck, exts *pcs.PckExtensions, now time.Time) (*tdxCollateral, error) {
	col := &tdxCollateral{}
	var info struct {
		TcbInfo   json.RawMessage `json:"tcbInfo"`
		Signature string          `json:"signature"`
	}
	infoSigner, err := signedPCSObject(g, pcs.TcbInfoURL(exts.FMSPC), headerTCBInfoChain, c.pool, now, &info.TcbInfo, &info.Signature, &info)
	if err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	if err := json.Unmarshal(info.TcbInfo, &col.tcbInfo); err != nil {
		return nil, fmt.Errorf("TCB info: %w", err)
	}
	ti := &col.tcbInfo
	if err := pcsHeader("TCB info", ti.ID, tcbInfoIDTDX, int(ti.Version), tcbInfoVersion, ti.IssueDate, ti.NextUpdate, now); err != nil {
		return nil, err
	}
	if len(ti.TcbLevels) == 0 {
		return nil, errors.New("TCB info: no TCB levels")
	}
	var qe struct {
		EnclaveIdentity json.RawMessage `json:"enclaveIdentity"`
		Signature       string          `json:"signature"`
	}
	qeSigner, err := signedPCSObject(g, pcs.QeIdentityURL(), headerQEIDChain, c.pool, now, &qe.EnclaveIdentity, &qe.Signature, &qe)
	if err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	if err := json.Unmarshal(qe.EnclaveIdentity, &col.qeIdentity); err != nil {
		return nil, fmt.Errorf("QE identity: %w", err)
	}
	qi := &col.qeIdentity
	if err := pcsHeader("QE identity", qi.ID, qeIdentityIDTDX, int(qi.Version), qeIdentityVersion, qi.IssueDate, qi.NextUpdate, now); err != nil {
		return nil, err
	}
	if len(qi.TcbLevels) == 0 {
		return nil, errors.New("QE identity: no TCB levels")
	}
	if v.cfg.CheckRevocations {
		if err := tdxRevocation(g, c, now, infoSigner, qeSigner); err != nil {
			return nil, err
		}
	}
	return col, nil
}

// signedPCSObject fetches link, checks its issuer chain (header) to roots and the signature of
// the object *raw (decoded with the response into into) by *sig. It returns the signing
// certificate.
func signedPCSObject(g pcsGetter, link, header string, roots *x509.CertPool, now time.Time, raw *json.RawMessage, sig *string, into any) (*x509.Certificate, error) {
	h, body, src, err := g.Get(link)
	if err != nil {
		return nil, err
	}
	signer, _, err := pcsIssuerChain(h, header, roots, now)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, into); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if len(*raw) == 0 {
		return nil, fmt.Errorf("%s: the response has no signed object", src)
	}
	if err := pcsSignature(signer, *raw, *sig); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	return signer, nil
}

// pcsIssuerChain parses a PCS issuer-chain header (URL-escaped PEM: the signing certificate,
// then the root) and verifies the signing certificate to roots at now.
func pcsIssuerChain(h map[string][]string, name string, roots *x509.CertPool, now time.Time) (signer, root *x509.Certificate, err error) {
	var vals []string
	for k, v := range h {
		if strings.EqualFold(k, name) {
			vals = append(vals, v...)
		}
	}
	if len(vals) != 1 || vals[0] == "" {
		return nil, nil, fmt.Errorf("the response has %d %s headers, want one", len(vals), name)
	}
	text, err := url.QueryUnescape(vals[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	var certs []*x509.Certificate
	rest := []byte(text)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 || len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, fmt.Errorf("%s: want a signing certificate and a root in PEM, found %d certificates", name, len(certs))
	}
	inter := x509.NewCertPool()
	inter.AddCert(certs[1])
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, nil, fmt.Errorf("%s: the signing certificate %q does not verify to a trusted root: %w", name, certs[0].Subject.CommonName, err)
	}
	return certs[0], certs[1], nil
}

// pcsSignature checks sig (hex, r||s of 32 bytes each) over msg by the signing certificate,
// which must be Intel's TCB signing certificate.
func pcsSignature(signer *x509.Certificate, msg []byte, sig string) error {
	if signer.Subject.CommonName != tcbSigningCN {
		return fmt.Errorf("signed by %q, not by %q", signer.Subject.CommonName, tcbSigningCN)
	}
	raw, err := hex.DecodeString(sig)
	if err != nil || len(raw) != 64 {
		return fmt.Errorf("signature is not 64 bytes of hex (%d bytes, %v)", len(raw), err)
	}
	pub, ok := signer.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("the signing certificate's key is %T, not ECDSA", signer.PublicKey)
	}
	digest := sha256.Sum256(msg)
	if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])) {
		return errors.New("bad signature: the signed object does not verify with the TCB signing certificate")
	}
	return nil
}

// pcsHeader checks a TCB info's or QE identity's id, version and validity period.
func pcsHeader(what, id, wantID string, version, wantVersion int, issued, next, now time.Time) error {
	if id != wantID || version != wantVersion {
		return fmt.Errorf("%s is %q version %d, want %q version %d", what, id, version, wantID, wantVersion)
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if now.Before(issued) {
		return fmt.Errorf("%s is not valid yet: issued %s, now %s", what, ts(issued), ts(now))
	}
	if !now.Before(next) {
		return fmt.Errorf("%s expired: its nextUpdate %s is before now (%s); get a current one from Intel PCS", what, ts(next), ts(now))
	}
	return nil
}

// tdxRevocation checks the PCK CRL and the root CA CRL (see tdxPCSCollateral).
func tdxRevocation(g pcsGetter, c *tdxCheck, now time.Time, tcbSigners ...*x509.Certificate) error {
	pck, inter, root := c.chain[0], c.chain[1], c.chain[2]
	ca := "platform"
	if strings.Contains(inter.Subject.CommonName, "Processor") {
		ca = "processor"
	}
	link := pcs.PckCrlURL(ca)
	_, der, src, err := g.Get(link)
	if err != nil {
		return fmt.Errorf("PCK CRL: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return fmt.Errorf("PCK CRL %s: %w", src, err)
	}
	if err := checkIssuedCRL(crl, "PCK CRL "+src, inter, now); err != nil {
		return err
	}
	if e := revokedEntry(crl, pck); e != nil {
		return fmt.Errorf("%w: TDX PCK certificate (serial %s) was revoked on %s by the PCK CRL %s (issued %s)", ErrRevoked,
			pck.SerialNumber.Text(16), e.RevocationTime.UTC().Format(time.RFC3339), src, crl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if len(root.CRLDistributionPoints) == 0 {
		return fmt.Errorf("the PCK chain's root %q names no CRL", root.Subject.CommonName)
	}
	rootLink := root.CRLDistributionPoints[0]
	_, der, rootSrc, err := g.Get(rootLink)
	if err != nil {
		return fmt.Errorf("root CA CRL: %w", err)
	}
	if crl, err = x509.ParseRevocationList(der); err != nil {
		return fmt.Errorf("root CA CRL %s: %w", rootSrc, err)
	}
	if err := checkIssuedCRL(crl, "root CA CRL "+rootSrc, root, now); err != nil {
		return err
	}
	for _, cert := range append([]*x509.Certificate{inter}, tcbSigners...) {
		if e := revokedEntry(crl, cert); e != nil {
			return fmt.Errorf("%w: %q (serial %s) was revoked on %s by the root CA CRL %s", ErrRevoked,
				cert.Subject.CommonName, cert.SerialNumber.Text(16), e.RevocationTime.UTC().Format(time.RFC3339), rootSrc)
		}
	}
	return nil
}

// checkIssuedCRL checks crl is issued and signed by issuer and current at now.
func checkIssuedCRL(crl *x509.RevocationList, src string, issuer *x509.Certificate, now time.Time) error {
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("%s is issued by %q, not by %q", src, crl.Issuer, issuer.Subject)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%s is not signed by %q: %w", src, issuer.Subject.CommonName, err)
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch {
	case now.Before(crl.ThisUpdate):
		return fmt.Errorf("%s is not valid yet: thisUpdate %s is after now (%s)", src, ts(crl.ThisUpdate), ts(now))
	case crl.NextUpdate.IsZero():
		return fmt.Errorf("%s has no nextUpdate: its freshness cannot be judged", src)
	case now.After(crl.NextUpdate):
		return fmt.Errorf("%s is stale: its nextUpdate %s is before now (%s); get a current one from Intel PCS", src, ts(crl.NextUpdate), ts(now))
	}
	return nil
}

func revokedEntry(crl *x509.RevocationList, c *x509.Certificate) *x509.RevocationListEntry {
	for i := range crl.RevokedCertificateEntries {
		if crl.RevokedCertificateEntries[i].SerialNumber.Cmp(c.SerialNumber) == 0 {
			return &crl.RevokedCertificateEntries[i]
		}
	}
	return nil
}
