package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/veil-runtime/veil/attestation/tdx"
)

// PCS signs Intel PCS collateral for a sim TDX chain, in PCS's API v4 shapes: TCB info and QE
// identity signed by an "Intel SGX TCB Signing" certificate of the sim root (the signature, hex
// r||s, over the exact bytes of the "tcbInfo" or "enclaveIdentity" object), their issuer chain
// as PCS's response headers carry it, and the PCK CRL (signed by the PCK intermediate) and root
// CA CRL (signed by the root). Only a TDX signer made by NewAuthority has the CA keys it needs.
type PCS struct {
	// Signing is the TCB signing certificate.
	Signing *x509.Certificate

	signer     *TDXSigner
	signingKey *ecdsa.PrivateKey
}

// PCS returns a sim PCS whose TCB signing certificate is valid from now for ten years.
func (s *TDXSigner) PCS(now time.Time) (*PCS, error) {
	if s.rootKey == nil || s.interKey == nil {
		return nil, errors.New("sim: this TDX signer has no CA keys (loaded from an authority file), so it cannot sign PCS collateral")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sim: TCB signing key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(rand.Reader), Subject: intelName("Intel SGX TCB Signing"), NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(10, 0, 0), SignatureAlgorithm: x509.ECDSAWithSHA256, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment, CRLDistributionPoints: []string{intelRootCRL},
	}
	cert, err := sign(rand.Reader, tmpl, s.Root, &key.PublicKey, s.rootKey)
	if err != nil {
		return nil, fmt.Errorf("sim: TCB signing certificate: %w", err)
	}
	return &PCS{Signing: cert, signer: s, signingKey: key}, nil
}

// IssuerChain is the value of PCS's Tcb-Info-Issuer-Chain and Sgx-Enclave-Identity-Issuer-Chain
// headers: the signing certificate and the root, PEM, URL-escaped.
func (p *PCS) IssuerChain() string { return issuerChain(p.Signing, p.signer.Root) }

// PCKCRLIssuerChain is the value of PCS's Sgx-Pck-Crl-Issuer-Chain header.
func (p *PCS) PCKCRLIssuerChain() string { return issuerChain(p.signer.Intermediate, p.signer.Root) }

func issuerChain(certs ...*x509.Certificate) string {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return url.QueryEscape(b.String())
}

// Sign returns a PCS response body {"<name>": object, "signature": "<hex r||s>"} with the
// signature over object's exact bytes; name is "tcbInfo" or "enclaveIdentity".
func (p *PCS) Sign(name string, object []byte) ([]byte, error) {
	sig, err := rawSign(p.signingKey, object)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{%q:%s,"signature":%q}`, name, object, hex.EncodeToString(sig))
	return b.Bytes(), nil
}

// PCKCRL returns the PCK CRL (DER) of the sim PCK intermediate, as PCS serves it at
// .../pckcrl?ca=platform&encoding=der. Zero times: now, and a month later.
func (p *PCS) PCKCRL(o CRLOptions) ([]byte, error) {
	return ecCRL(o, p.signer.Intermediate, p.signer.interKey)
}

// RootCRL returns the root CA CRL (DER), as Intel serves it at the root's distribution point.
func (p *PCS) RootCRL(o CRLOptions) ([]byte, error) { return ecCRL(o, p.signer.Root, p.signer.rootKey) }

func ecCRL(o CRLOptions, issuer *x509.Certificate, key *ecdsa.PrivateKey) ([]byte, error) {
	if o.ThisUpdate.IsZero() {
		o.ThisUpdate = time.Now().Add(-time.Minute)
	}
	if o.NextUpdate.IsZero() {
		o.NextUpdate = o.ThisUpdate.AddDate(0, 1, 0)
	}
	if o.Number == 0 {
		o.Number = 1
	}
	tmpl := &x509.RevocationList{SignatureAlgorithm: x509.ECDSAWithSHA256, Number: big.NewInt(o.Number),
		ThisUpdate: o.ThisUpdate, NextUpdate: o.NextUpdate}
	for _, s := range o.Revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: o.ThisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		return nil, fmt.Errorf("sim: CRL of %s: %w", issuer.Subject.CommonName, err)
	}
	return der, nil
}

// TCBLevel is one level of a TCB info or QE identity.
type TCBLevel struct {
	// SGX (16 components) and PCESVN: the platform part (TCB info levels).
	SGX    [16]byte
	PCESVN uint16
	// TDX is TEE_TCB_SVN's components (TCB info levels).
	TDX [16]byte
	// ISVSVN is the QE's or TDX module's SVN (QE identity and TDX module identity levels).
	ISVSVN uint32
	// Status is Intel's name (UpToDate, OutOfDate, ...); Date the tcbDate.
	Status, Date string
	Advisories   []string
}

// TDXModuleIdentity is a TCB info's "tdxModuleIdentities" entry: ID "TDX_<major version>".
type TDXModuleIdentity struct {
	ID     string
	Levels []TCBLevel
}

// TCBInfo is an Intel TDX TCB info (version 3) to sign.
type TCBInfo struct {
	FMSPC, PCEID            string
	IssueDate, NextUpdate   time.Time
	MRSignerSeam            []byte
	Levels                  []TCBLevel
	ModuleIdentities        []TDXModuleIdentity
	TCBEvaluationDataNumber int
}

// QEIdentity is an Intel TD_QE identity (version 2) to sign.
type QEIdentity struct {
	IssueDate, NextUpdate time.Time
	MRSigner              []byte
	ISVProdID             uint16
	Attributes            []byte // 16 bytes; AttributesMask all ones unless set
	AttributesMask        []byte
	Levels                []TCBLevel
}

// TCBInfo returns a TCB info for this signer's platform (the FMSPC, PCEID and SGX TCB of its
// PCK certificate, the TEE_TCB_SVN and MRSIGNERSEAM of its quotes) with one level, the
// platform's own, UpToDate; issued now, next update in a month.
func (s *TDXSigner) TCBInfo(now time.Time) (*TCBInfo, error) {
	exts, err := pcs.PckCertificateExtensions(s.PCK)
	if err != nil {
		return nil, fmt.Errorf("sim: PCK extensions: %w", err)
	}
	q, err := s.sampleQuote()
	if err != nil {
		return nil, err
	}
	l := TCBLevel{PCESVN: exts.TCB.PCESvn, Status: "UpToDate", Date: "2024-03-13T00:00:00Z"}
	copy(l.SGX[:], exts.TCB.CPUSvnComponents)
	copy(l.TDX[:], q.GetTdQuoteBody().GetTeeTcbSvn())
	return &TCBInfo{FMSPC: exts.FMSPC, PCEID: exts.PCEID, IssueDate: now.Add(-time.Hour), NextUpdate: now.AddDate(0, 1, 0),
		MRSignerSeam: q.GetTdQuoteBody().GetMrSignerSeam(), Levels: []TCBLevel{l}, TCBEvaluationDataNumber: 17}, nil
}

// QEIdentity returns the identity of this signer's QE with one level, its own ISVSVN, UpToDate.
func (s *TDXSigner) QEIdentity(now time.Time) (*QEIdentity, error) {
	q, err := s.sampleQuote()
	if err != nil {
		return nil, err
	}
	qe := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetQeReport()
	return &QEIdentity{IssueDate: now.Add(-time.Hour), NextUpdate: now.AddDate(0, 1, 0), MRSigner: qe.GetMrSigner(),
		ISVProdID: uint16(qe.GetIsvProdId()), Attributes: qe.GetAttributes(),
		Levels: []TCBLevel{{ISVSVN: qe.GetIsvSvn(), Status: "UpToDate", Date: "2024-03-13T00:00:00Z"}}}, nil
}

func (s *TDXSigner) sampleQuote() (*pb.QuoteV4, error) {
	raw, err := s.SignQuote(s.template)
	if err != nil {
		return nil, err
	}
	q, err := tdx.ParseQuote(raw)
	if err != nil {
		return nil, fmt.Errorf("sim: own quote: %w", err)
	}
	return q, nil
}

type jsonComponent struct {
	SVN byte `json:"svn"`
}

func (l TCBLevel) json(kind string) map[string]any {
	tcb := map[string]any{}
	comps := func(b [16]byte) []jsonComponent {
		out := make([]jsonComponent, 16)
		for i, v := range b {
			out[i].SVN = v
		}
		return out
	}
	switch kind {
	case "platform":
		tcb["sgxtcbcomponents"], tcb["pcesvn"], tcb["tdxtcbcomponents"] = comps(l.SGX), l.PCESVN, comps(l.TDX)
	default:
		tcb["isvsvn"] = l.ISVSVN
	}
	adv := l.Advisories
	if adv == nil {
		adv = []string{}
	}
	return map[string]any{"tcb": tcb, "tcbDate": l.Date, "tcbStatus": l.Status, "advisoryIDs": adv}
}

func levels(ls []TCBLevel, kind string) []map[string]any {
	out := make([]map[string]any, len(ls))
	for i, l := range ls {
		out[i] = l.json(kind)
	}
	return out
}

// JSON is the "tcbInfo" object, as PCS writes it.
func (t *TCBInfo) JSON() []byte {
	zero := hex.EncodeToString(make([]byte, 8))
	mods := make([]map[string]any, len(t.ModuleIdentities))
	for i, m := range t.ModuleIdentities {
		mods[i] = map[string]any{"id": m.ID, "mrsigner": hex.EncodeToString(t.MRSignerSeam), "attributes": zero,
			"attributesMask": "ffffffffffffffff", "tcbLevels": levels(m.Levels, "module")}
	}
	b, _ := json.Marshal(map[string]any{
		"id": "TDX", "version": 3, "issueDate": t.IssueDate.UTC().Format(time.RFC3339), "nextUpdate": t.NextUpdate.UTC().Format(time.RFC3339),
		"fmspc": t.FMSPC, "pceId": t.PCEID, "tcbType": 0, "tcbEvaluationDataNumber": t.TCBEvaluationDataNumber,
		"tdxModule":           map[string]any{"mrsigner": hex.EncodeToString(t.MRSignerSeam), "attributes": zero, "attributesMask": "ffffffffffffffff"},
		"tdxModuleIdentities": mods, "tcbLevels": levels(t.Levels, "platform"),
	})
	return b
}

// JSON is the "enclaveIdentity" object, as PCS writes it.
func (q *QEIdentity) JSON() []byte {
	mask := q.AttributesMask
	if mask == nil {
		mask = bytes.Repeat([]byte{0xff}, len(q.Attributes))
	}
	attrs := bytes.Clone(q.Attributes)
	for i := range attrs {
		attrs[i] &= mask[i]
	}
	b, _ := json.Marshal(map[string]any{
		"id": "TD_QE", "version": 2, "issueDate": q.IssueDate.UTC().Format(time.RFC3339), "nextUpdate": q.NextUpdate.UTC().Format(time.RFC3339),
		"tcbEvaluationDataNumber": 17, "miscselect": "00000000", "miscselectMask": "ffffffff",
		"attributes": hex.EncodeToString(attrs), "attributesMask": hex.EncodeToString(mask),
		"mrsigner": hex.EncodeToString(q.MRSigner), "isvprodid": q.ISVProdID, "tcbLevels": levels(q.Levels, "qe"),
	})
	return b
}

// Where PCS's responses go in a collateral directory (verifier.Config.CollateralDir): each URL's
// path and query.
const (
	pcsTCBInfoPath    = "tdx/certification/v4/tcb?fmspc="
	pcsQEIdentityPath = "tdx/certification/v4/qe/identity"
	pcsPCKCRLPath     = "sgx/certification/v4/pckcrl?ca=platform&encoding=der"
	pcsRootCRLPath    = "IntelSGXRootCA.der"
)

// WriteDir writes a collateral directory as curl -D FILE.headers -o FILE would from Intel PCS:
// info and qe signed by p, with their issuer chains in the headers; the PCK CRL and the root CA
// CRL of p's TDX signer made from pckCRL and rootCRL.
func (p *PCS) WriteDir(dir string, info *TCBInfo, qe *QEIdentity, pckCRL, rootCRL CRLOptions) error {
	tcb, err := p.Sign("tcbInfo", info.JSON())
	if err != nil {
		return err
	}
	id, err := p.Sign("enclaveIdentity", qe.JSON())
	if err != nil {
		return err
	}
	pck, err := p.PCKCRL(pckCRL)
	if err != nil {
		return err
	}
	root, err := p.RootCRL(rootCRL)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path, header string
		body         []byte
	}{
		{pcsTCBInfoPath + info.FMSPC, "TCB-Info-Issuer-Chain: " + p.IssuerChain(), tcb},
		{pcsQEIdentityPath, "SGX-Enclave-Identity-Issuer-Chain: " + p.IssuerChain(), id},
		{pcsPCKCRLPath, "SGX-PCK-CRL-Issuer-Chain: " + p.PCKCRLIssuerChain(), pck},
		{pcsRootCRLPath, "", root},
	} {
		file := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return fmt.Errorf("sim: PCS collateral: %w", err)
		}
		if err := os.WriteFile(file, f.body, 0o644); err != nil {
			return fmt.Errorf("sim: PCS collateral: %w", err)
		}
		if f.header == "" {
			continue
		}
		h := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + f.header + "\r\n\r\n"
		if err := os.WriteFile(file+".headers", []byte(h), 0o644); err != nil {
			return fmt.Errorf("sim: PCS collateral: %w", err)
		}
	}
	return nil
}
