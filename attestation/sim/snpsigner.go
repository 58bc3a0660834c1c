package sim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/layout"
)

// TCB is an SNP TCB_VERSION in the Milan/Genoa layout.
type TCB struct {
	Bootloader, TEE, SNP, Microcode uint8
}

func (t TCB) raw() uint64 {
	return uint64(t.Bootloader) | uint64(t.TEE)<<8 | uint64(t.SNP)<<48 | uint64(t.Microcode)<<56
}

// DefaultTCB is the TCB a sim platform reports unless told otherwise.
var DefaultTCB = TCB{Bootloader: 4, TEE: 0, SNP: 22, Microcode: 213}

// SNP guest policy bits (SEV-SNP ABI, guest policy).
const (
	PolicySMT      = 1 << 16
	PolicyReserved = 1 << 17 // must be one
	PolicyMigrate  = 1 << 18
	PolicyDebug    = 1 << 19
	// DefaultSNPPolicy is SMT allowed and nothing else: no debug, no migration agent.
	DefaultSNPPolicy = PolicyReserved | PolicySMT
)

// family, model, stepping of the simulated CPU by product line.
var productFMS = map[string][3]byte{
	"Milan": {0x19, 0x01, 0x01},
	"Genoa": {0x19, 0x11, 0x01},
}

// SNPSigner signs SNP reports as a simulated AMD secure processor with a VCEK.
type SNPSigner struct {
	ProductLine    string
	ARK, ASK, VCEK *x509.Certificate
	vcekKey        *ecdsa.PrivateKey
	arkKey         *rsa.PrivateKey // nil when loaded from an authority file
	askKey         *rsa.PrivateKey // nil when loaded from an authority file
	tcb            TCB
	vlek           bool // VCEK is a VLEK and ASK an ASVK (VLEKSigner)
}

// TCB returns the TCB the signer's VCEK certifies and its reports carry.
func (s *SNPSigner) TCB() TCB { return s.tcb }

func newSNPSigner(r io.Reader, line string, tcb TCB, now time.Time) (*SNPSigner, error) {
	if _, ok := productFMS[line]; !ok {
		return nil, fmt.Errorf("sim: product line %q is not simulated (Milan or Genoa)", line)
	}
	arkKey, err := rsa.GenerateKey(r, 4096)
	if err != nil {
		return nil, fmt.Errorf("sim: ARK key: %w", err)
	}
	askKey, err := rsa.GenerateKey(r, 4096)
	if err != nil {
		return nil, fmt.Errorf("sim: ASK key: %w", err)
	}
	vcekKey, err := ecdsa.GenerateKey(elliptic.P384(), r)
	if err != nil {
		return nil, fmt.Errorf("sim: VCEK key: %w", err)
	}
	crl := kds.CrlLinkByRole(line, "ASK")
	ark := caTemplate(r, amdName("ARK-"+line), now, 25, crl)
	ark.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	arkCert, err := sign(r, ark, ark, &arkKey.PublicKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("sim: ARK: %w", err)
	}
	ask := caTemplate(r, amdName("SEV-"+line), now, 25, crl)
	ask.KeyUsage = x509.KeyUsageCertSign
	askCert, err := sign(r, ask, arkCert, &askKey.PublicKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("sim: ASK: %w", err)
	}
	vcek, err := vcekTemplate(r, line, tcb, now)
	if err != nil {
		return nil, err
	}
	vcekCert, err := sign(r, vcek, askCert, &vcekKey.PublicKey, askKey)
	if err != nil {
		return nil, fmt.Errorf("sim: VCEK: %w", err)
	}
	return &SNPSigner{ProductLine: line, ARK: arkCert, ASK: askCert, VCEK: vcekCert, vcekKey: vcekKey, arkKey: arkKey, askKey: askKey, tcb: tcb}, nil
}

func caTemplate(r io.Reader, name pkix.Name, now time.Time, years int, crl string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          serial(r),
		Subject:               name,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(years, 0, 0),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		IsCA:                  true,
		BasicConstraintsValid: true,
		CRLDistributionPoints: []string{crl},
	}
}

// vcekTemplate is a VCEK certificate as AMD's KDS issues them: the KDS extensions carry the TCB,
// the product name and the HWID (here the sim CHIP_ID).
func vcekTemplate(r io.Reader, line string, tcb TCB, now time.Time) (*x509.Certificate, error) {
	fms := productFMS[line]
	product := kds.ProductName(abi.SevProductFromCpuid1Eax(abi.FmsToCpuid1Eax(fms[0], fms[1], fms[2])))
	chip := ChipID()
	ints := []struct {
		oid asn1.ObjectIdentifier
		v   uint8
	}{
		{kds.OidStructVersion, 0}, {kds.OidBlSpl, tcb.Bootloader}, {kds.OidTeeSpl, tcb.TEE},
		{kds.OidSnpSpl, tcb.SNP}, {kds.OidSpl4, 0}, {kds.OidSpl5, 0}, {kds.OidSpl6, 0}, {kds.OidSpl7, 0},
		{kds.OidUcodeSpl, tcb.Microcode},
	}
	var exts []pkix.Extension
	for _, e := range ints {
		v, err := asn1.Marshal(int(e.v))
		if err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: e.oid, Value: v})
	}
	name, err := asn1.MarshalWithParams(product, "ia5")
	if err != nil {
		return nil, err
	}
	hwid, err := asn1.Marshal(chip[:])
	if err != nil {
		return nil, err
	}
	exts = append(exts, pkix.Extension{Id: kds.OidProductName1, Value: name}, pkix.Extension{Id: kds.OidHwid, Value: hwid})
	return &x509.Certificate{
		SerialNumber:       serial(r),
		Subject:            amdName("SEV-VCEK"),
		NotBefore:          now.Add(-time.Hour),
		NotAfter:           now.AddDate(7, 0, 0),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		ExtraExtensions:    exts,
	}, nil
}

// SNPLaunch is what the host and the platform fix when a guest starts: a real PSP computes the
// measurement and copies HOST_DATA and the policy from the launch commands.
type SNPLaunch struct {
	// Measurement is the launch digest (MEASUREMENT).
	Measurement [48]byte
	// HostData is HOST_DATA: in Veil, the initdata digest zero-padded or truncated to 32 bytes.
	HostData [32]byte
	// Policy is the guest policy; 0 means DefaultSNPPolicy (no debug).
	Policy uint64
	// VMPL is the privilege level the guest asks from (0 for the agent).
	VMPL uint32
	// GuestSVN, FamilyID and ImageID come from an ID block; zero when none is used.
	GuestSVN          uint32
	FamilyID, ImageID [16]byte
	// ReportID identifies the guest instance; zero means random per attester.
	ReportID [32]byte
}

// Report returns a signed SEV-SNP ATTESTATION_REPORT (version 3) for the launch and reportData.
func (s *SNPSigner) Report(l SNPLaunch, reportData [64]byte) ([]byte, error) {
	policy := l.Policy
	if policy == 0 {
		policy = DefaultSNPPolicy
	}
	if _, err := abi.ParseSnpPolicy(policy); err != nil {
		return nil, fmt.Errorf("sim: guest policy %#x: %w", policy, err)
	}
	raw := make([]byte, layout.SNPReportSize)
	le32 := binary.LittleEndian.PutUint32
	le64 := binary.LittleEndian.PutUint64
	tcb := s.tcb.raw()
	fms := productFMS[s.ProductLine]
	le32(raw[0x00:], 3)
	le32(raw[0x04:], l.GuestSVN)
	le64(raw[0x08:], policy)
	copy(raw[0x10:], l.FamilyID[:])
	copy(raw[0x20:], l.ImageID[:])
	le32(raw[0x30:], l.VMPL)
	le32(raw[0x34:], abi.SignEcdsaP384Sha384)
	le64(raw[0x38:], tcb) // CURRENT_TCB
	le64(raw[0x40:], 1)   // PLATFORM_INFO: SMT enabled
	copy(raw[0x50:], reportData[:])
	copy(raw[0x90:], l.Measurement[:])
	copy(raw[layout.SNPHostDataOffset:], l.HostData[:])
	copy(raw[0x140:], l.ReportID[:])
	for i := 0x160; i < 0x180; i++ {
		raw[i] = 0xFF // REPORT_ID_MA: no migration agent
	}
	le64(raw[0x180:], tcb) // REPORTED_TCB
	raw[0x188], raw[0x189], raw[0x18A] = fms[0], fms[1], fms[2]
	chip := ChipID()
	copy(raw[0x1A0:], chip[:])
	le64(raw[0x1E0:], tcb)                         // COMMITTED_TCB
	raw[0x1E8], raw[0x1E9], raw[0x1EA] = 21, 55, 1 // CURRENT build, minor, major
	raw[0x1EC], raw[0x1ED], raw[0x1EE] = 21, 55, 1 // COMMITTED
	le64(raw[0x1F0:], tcb)                         // LAUNCH_TCB
	s.vlekSignerInfo(raw)
	if err := s.SignReport(raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// SignReport (re)signs a raw report in place with the VCEK: ECDSA P-384 over SHA-384 of bytes
// 0..0x29F, R and S little-endian.
func (s *SNPSigner) SignReport(raw []byte) error {
	if len(raw) != layout.SNPReportSize {
		return fmt.Errorf("sim: report has %d bytes, want %d", len(raw), layout.SNPReportSize)
	}
	digest := sha512.Sum384(abi.SignedComponent(raw))
	r, sv, err := ecdsa.Sign(rand.Reader, s.vcekKey, digest[:])
	if err != nil {
		return fmt.Errorf("sim: sign report: %w", err)
	}
	return abi.SetSignature(r, sv, raw)
}

// CertChain returns the certificate table a sim host supplies: the VCEK (VLEK) only. A verifier
// takes the ASK and ARK from its own configuration, never from the evidence.
func (s *SNPSigner) CertChain() []evidence.CertTableEntry {
	return []evidence.CertTableEntry{s.certTableEntry()}
}

func sign(r io.Reader, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(r, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func serial(r io.Reader) *big.Int {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		_, _ = rand.Read(b[:])
	}
	b[0] &= 0x7F
	b[0] |= 0x01
	return new(big.Int).SetBytes(b[:])
}

// vcekTCB reads the TCB a VCEK certifies from its KDS extensions.
func vcekTCB(c *x509.Certificate) (TCB, error) {
	exts, err := kds.VcekCertificateExtensions(c)
	if err != nil {
		return TCB{}, fmt.Errorf("sim: VCEK extensions: %w", err)
	}
	p := kds.DecomposeTCBVersion(exts.TCBVersion)
	return TCB{Bootloader: p.BlSpl, TEE: p.TeeSpl, SNP: p.SnpSpl, Microcode: p.UcodeSpl}, nil
}
