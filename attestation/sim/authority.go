package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/veil-runtime/veil/attestation/snp"
	"github.com/veil-runtime/veil/attestation/tdx"
)

// File names that WriteFiles uses in a directory.
const (
	// AuthorityFile holds the signing keys and chains: it goes into the guest image only.
	AuthorityFile = "sim-authority.pem"
	// SNPRootsFile holds the sim ASK and ARK: give it to a verifier that should trust sim SNP.
	SNPRootsFile = "sim-snp-roots.pem"
	// TDXRootFile holds the sim TDX root: give it to a verifier that should trust sim TDX.
	TDXRootFile = "sim-tdx-root.pem"
)

// Options tune NewAuthority; the zero value is Milan, DefaultTCB, now.
type Options struct {
	// ProductLine is the simulated AMD product line: "Milan" (default) or "Genoa".
	ProductLine string
	// TCB is the SNP TCB the VCEK certifies; zero means DefaultTCB.
	TCB TCB
	// Now is the start of the certificates' validity; zero means time.Now().
	Now time.Time
}

// Authority is a simulated platform's signing material: an SNP signer (ARK, ASK, VCEK and the
// VCEK key) and a TDX signer (root, intermediate and PCK certificates, the certified QE report
// and the attestation key). The private keys of the CAs are discarded once the chains are made.
type Authority struct {
	SNP *SNPSigner
	TDX *TDXSigner
}

// NewAuthority generates a new sim authority: keys from r (crypto/rand.Reader in production).
func NewAuthority(r io.Reader, opts Options) (*Authority, error) {
	if opts.ProductLine == "" {
		opts.ProductLine = "Milan"
	}
	if opts.TCB == (TCB{}) {
		opts.TCB = DefaultTCB
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	s, err := newSNPSigner(r, opts.ProductLine, opts.TCB, opts.Now)
	if err != nil {
		return nil, err
	}
	t, err := newTDXSigner(r, opts.Now)
	if err != nil {
		return nil, err
	}
	return &Authority{SNP: s, TDX: t}, nil
}

// PEM block roles of the authority file (the "Role" header of each block).
const (
	roleSNPARK   = "snp-ark"
	roleSNPASK   = "snp-ask"
	roleSNPVCEK  = "snp-vcek"
	roleTDXRoot  = "tdx-root"
	roleTDXInter = "tdx-intermediate"
	roleTDXPCK   = "tdx-pck"
	roleTDXAttK  = "tdx-attestation-key"
	blockTmpl    = "VEIL SIM TDX QUOTE TEMPLATE"
	blockQECert  = "VEIL SIM TDX QE CERTIFICATION DATA"
)

// MarshalPEM returns the authority file: certificates, the VCEK and attestation private keys and
// the TDX templates as PEM blocks. It is secret to the guest image.
func (a *Authority) MarshalPEM() ([]byte, error) {
	var buf bytes.Buffer
	add := func(typ, role string, data []byte) {
		_ = pem.Encode(&buf, &pem.Block{Type: typ, Headers: map[string]string{"Role": role}, Bytes: data})
	}
	for _, c := range []struct {
		role string
		cert *x509.Certificate
	}{{roleSNPARK, a.SNP.ARK}, {roleSNPASK, a.SNP.ASK}, {roleSNPVCEK, a.SNP.VCEK},
		{roleTDXRoot, a.TDX.Root}, {roleTDXInter, a.TDX.Intermediate}, {roleTDXPCK, a.TDX.PCK}} {
		add("CERTIFICATE", c.role, c.cert.Raw)
	}
	for _, k := range []struct {
		role string
		key  *ecdsa.PrivateKey
	}{{roleSNPVCEK, a.SNP.vcekKey}, {roleTDXAttK, a.TDX.attKey}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("sim: %s key: %w", k.role, err)
		}
		add("PRIVATE KEY", k.role, der)
	}
	add(blockTmpl, "tdx", a.TDX.template)
	add(blockQECert, "tdx", a.TDX.qeCertData)
	return buf.Bytes(), nil
}

// ParseAuthority reads what MarshalPEM wrote.
func ParseAuthority(data []byte) (*Authority, error) {
	certs := map[string]*x509.Certificate{}
	keys := map[string]*ecdsa.PrivateKey{}
	blobs := map[string][]byte{}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		role := block.Headers["Role"]
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("sim authority: %s certificate: %w", role, err)
			}
			certs[role] = c
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			ek, ok := k.(*ecdsa.PrivateKey)
			if err != nil || !ok {
				return nil, fmt.Errorf("sim authority: %s key is not an ECDSA PKCS#8 key (%v)", role, err)
			}
			keys[role] = ek
		default:
			blobs[block.Type] = block.Bytes
		}
	}
	return assemble(certs, keys, blobs)
}

func assemble(certs map[string]*x509.Certificate, keys map[string]*ecdsa.PrivateKey, blobs map[string][]byte) (*Authority, error) {
	var missing []error
	for _, role := range []string{roleSNPARK, roleSNPASK, roleSNPVCEK, roleTDXRoot, roleTDXInter, roleTDXPCK} {
		if certs[role] == nil {
			missing = append(missing, fmt.Errorf("no %s certificate", role))
		}
	}
	for _, role := range []string{roleSNPVCEK, roleTDXAttK} {
		if keys[role] == nil {
			missing = append(missing, fmt.Errorf("no %s private key", role))
		}
	}
	for _, b := range []string{blockTmpl, blockQECert} {
		if blobs[b] == nil {
			missing = append(missing, fmt.Errorf("no %s block", b))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("sim authority: %w", errors.Join(missing...))
	}
	ark := certs[roleSNPARK]
	line := ark.Subject.CommonName[len("ARK-"):]
	if _, ok := productFMS[line]; !ok || !IsSimulatedCert(ark) {
		return nil, fmt.Errorf("sim authority: ARK %q is not a sim ARK of a simulated product line", ark.Subject.CommonName)
	}
	tcb, err := vcekTCB(certs[roleSNPVCEK])
	if err != nil {
		return nil, err
	}
	if len(blobs[blockTmpl]) != quoteHeaderSize+quoteBodySize {
		return nil, fmt.Errorf("sim authority: TDX template has %d bytes, want %d", len(blobs[blockTmpl]), quoteHeaderSize+quoteBodySize)
	}
	return &Authority{
		SNP: &SNPSigner{ProductLine: line, ARK: ark, ASK: certs[roleSNPASK], VCEK: certs[roleSNPVCEK], vcekKey: keys[roleSNPVCEK], tcb: tcb},
		TDX: &TDXSigner{Root: certs[roleTDXRoot], Intermediate: certs[roleTDXInter], PCK: certs[roleTDXPCK],
			attKey: keys[roleTDXAttK], template: blobs[blockTmpl], qeCertData: blobs[blockQECert]},
	}, nil
}

// SNPRootsPEM returns the sim ASK and ARK in AMD KDS cert_chain form (ASK, then ARK).
func (a *Authority) SNPRootsPEM() []byte {
	return append(pemCert(a.SNP.ASK), pemCert(a.SNP.ARK)...)
}

// TDXRootPEM returns the sim TDX root certificate.
func (a *Authority) TDXRootPEM() []byte { return pemCert(a.TDX.Root) }

// SNPRoots returns the sim SNP roots, ready for a verifier's configuration.
func (a *Authority) SNPRoots() *snp.Roots {
	r, err := snp.ParseRoots(a.SNPRootsPEM())
	if err != nil {
		panic(fmt.Sprintf("sim: own roots do not parse: %v", err))
	}
	return r
}

// TDXRoots returns a pool with the sim TDX root, ready for a verifier's configuration.
func (a *Authority) TDXRoots() *x509.CertPool {
	pool, err := tdx.ParseRoots(a.TDXRootPEM())
	if err != nil {
		panic(fmt.Sprintf("sim: own TDX root does not parse: %v", err))
	}
	return pool
}

// WriteFiles writes AuthorityFile (mode 0600), SNPRootsFile and TDXRootFile (0644) into dir.
func (a *Authority) WriteFiles(dir string) error {
	priv, err := a.MarshalPEM()
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{AuthorityFile, priv, 0o600}, {SNPRootsFile, a.SNPRootsPEM(), 0o644}, {TDXRootFile, a.TDXRootPEM(), 0o644}} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("sim: write %s: %w", f.name, err)
		}
	}
	return nil
}

// LoadAuthority reads an authority file.
func LoadAuthority(path string) (*Authority, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	return ParseAuthority(data)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
