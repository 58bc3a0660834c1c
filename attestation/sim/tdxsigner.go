package sim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/pcs"
	pb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/testing/testdata"

	"google.golang.org/protobuf/proto"

	"github.com/veil-runtime/veil/attestation/tdx"
)

// Layout of a version 4 quote (go-tdx-guest abi) that the signer writes.
const (
	quoteHeaderSize = 0x30
	quoteBodySize   = 0x248
	bodyTDAttrs     = 0x78
	bodyMRTD        = 0x88
	bodyMRConfigID  = 0xB8
	bodyMROwner     = 0xE8
	bodyMROwnerCfg  = 0x118
	bodyRTMRs       = 0x148
	bodyReportData  = 0x208
	certDataQE      = 6 // certification data type: QE report certification data
	certDataPCK     = 5 // certification data type: PCK certificate chain
)

// Intel's CRL distribution points, as real PCK chains carry them.
const (
	intelRootCRL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
	intelPCKCRL  = "https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der"
)

// TDXSigner signs TDX quotes as a simulated quoting enclave: its QE report is certified by a PCK
// certificate of a sim chain, and its attestation key signs each quote.
type TDXSigner struct {
	Root, Intermediate, PCK *x509.Certificate
	attKey                  *ecdsa.PrivateKey
	rootKey, interKey       *ecdsa.PrivateKey // nil when loaded from an authority file
	template                []byte            // quote header and TD quote body: the fields a platform fixes
	qeCertData              []byte            // QE report certification data (QE report, signature, auth data, PCK chain)
}

// newTDXSigner re-signs go-tdx-guest's sample quote recipe with a new chain: P-256 root,
// intermediate and PCK certificates with Intel's names, the PCK carrying the sample's SGX
// extension; a QE report binding a new attestation key, signed by the PCK key.
func newTDXSigner(r io.Reader, now time.Time) (*TDXSigner, error) {
	sample, err := tdx.ParseQuote(testdata.RawQuote)
	if err != nil {
		return nil, fmt.Errorf("sim: go-tdx-guest sample quote: %w", err)
	}
	sampleChain, err := tdx.PCKChain(sample)
	if err != nil {
		return nil, fmt.Errorf("sim: go-tdx-guest sample quote: %w", err)
	}
	s := &TDXSigner{}
	pckKey, err := s.makeChain(r, sampleChain[0], now)
	if err != nil {
		return nil, err
	}
	if s.attKey, err = ecdsa.GenerateKey(elliptic.P256(), r); err != nil {
		return nil, fmt.Errorf("sim: attestation key: %w", err)
	}
	header, err := abi.HeaderToAbiBytes(sample.GetHeader())
	if err != nil {
		return nil, fmt.Errorf("sim: sample header: %w", err)
	}
	body, err := abi.TdQuoteBodyToAbiBytes(sample.GetTdQuoteBody())
	if err != nil {
		return nil, fmt.Errorf("sim: sample body: %w", err)
	}
	copy(header[0x1C:0x30], TDXUserData[:])
	s.template = append(header, body...)
	qe := sample.GetSignedData().GetCertificationData().GetQeReportCertificationData()
	s.qeCertData, err = s.certifyQE(qe.GetQeReport(), qe.GetQeAuthData().GetData(), pckKey)
	return s, err
}

func (s *TDXSigner) makeChain(r io.Reader, samplePCK *x509.Certificate, now time.Time) (*ecdsa.PrivateKey, error) {
	var keys [3]*ecdsa.PrivateKey
	for i := range keys {
		k, err := ecdsa.GenerateKey(elliptic.P256(), r)
		if err != nil {
			return nil, fmt.Errorf("sim: PCK chain key: %w", err)
		}
		keys[i] = k
	}
	ca := func(cn, crl string, years int) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: serial(r), Subject: intelName(cn), NotBefore: now.Add(-time.Hour),
			NotAfter: now.AddDate(years, 0, 0), SignatureAlgorithm: x509.ECDSAWithSHA256,
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			CRLDistributionPoints: []string{crl},
		}
	}
	root, err := sign(r, ca("Intel SGX Root CA", intelRootCRL, 25), ca("Intel SGX Root CA", intelRootCRL, 25), &keys[0].PublicKey, keys[0])
	if err != nil {
		return nil, fmt.Errorf("sim: TDX root: %w", err)
	}
	mid := ca("Intel SGX PCK Platform CA", intelRootCRL, 15)
	mid.MaxPathLenZero = true
	inter, err := sign(r, mid, root, &keys[1].PublicKey, keys[0])
	if err != nil {
		return nil, fmt.Errorf("sim: TDX intermediate: %w", err)
	}
	sgx, err := findExtension(samplePCK)
	if err != nil {
		return nil, err
	}
	pck, err := pckCertificate(r, sgx, inter, keys[1], &keys[2].PublicKey, now)
	if err != nil {
		return nil, err
	}
	s.Root, s.Intermediate, s.PCK = root, inter, pck
	s.rootKey, s.interKey = keys[0], keys[1]
	return keys[2], nil
}

// pckCertificate issues a PCK certificate for pub with the SGX extension sgx (FMSPC, PCEID,
// TCB), signed by the intermediate inter.
func pckCertificate(r io.Reader, sgx []pkix.Extension, inter *x509.Certificate, interKey *ecdsa.PrivateKey,
	pub *ecdsa.PublicKey, now time.Time) (*x509.Certificate, error) {
	raw, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("sim: PCK key: %w", err)
	}
	ski := sha1.Sum(raw) // a key identifier (RFC 5280 method 1), not a security function
	leaf := &x509.Certificate{
		SerialNumber: serial(r), Subject: intelName("Intel SGX PCK Certificate"), NotBefore: now.Add(-time.Hour),
		NotAfter: now.AddDate(7, 0, 0), SignatureAlgorithm: x509.ECDSAWithSHA256, BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		CRLDistributionPoints: []string{intelPCKCRL}, SubjectKeyId: ski[:], ExtraExtensions: sgx,
	}
	pck, err := sign(r, leaf, inter, pub, interKey)
	if err != nil {
		return nil, fmt.Errorf("sim: PCK certificate: %w", err)
	}
	if _, err := pcs.PckCertificateExtensions(pck); err != nil {
		return nil, fmt.Errorf("sim: PCK certificate: %w", err)
	}
	return pck, nil
}

func findExtension(c *x509.Certificate) ([]pkix.Extension, error) {
	for _, e := range c.Extensions {
		if e.Id.Equal(pcs.OidSgxExtension) {
			return []pkix.Extension{e}, nil
		}
	}
	return nil, errors.New("sim: the sample PCK certificate has no SGX extension")
}

// certifyQE binds the attestation key into the QE report (REPORTDATA = SHA-256(key || auth
// data) || 32 zero bytes), signs the report with the PCK key and returns the certification data.
func (s *TDXSigner) certifyQE(sample *pb.EnclaveReport, auth []byte, pckKey *ecdsa.PrivateKey) ([]byte, error) {
	qe := proto.Clone(sample).(*pb.EnclaveReport)
	key, err := rawKey(&s.attKey.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append(key, auth...))
	qe.ReportData = append(sum[:], make([]byte, 32)...)
	raw, err := abi.EnclaveReportToAbiBytes(qe)
	if err != nil {
		return nil, fmt.Errorf("sim: QE report: %w", err)
	}
	sig, err := rawSign(pckKey, raw)
	if err != nil {
		return nil, err
	}
	var chain bytes.Buffer
	for _, c := range []*x509.Certificate{s.PCK, s.Intermediate, s.Root} {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	out := append(raw, sig...)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(auth)))
	out = append(out, auth...)
	out = binary.LittleEndian.AppendUint16(out, certDataPCK)
	out = binary.LittleEndian.AppendUint32(out, uint32(chain.Len()))
	return append(out, chain.Bytes()...), nil
}

// TDXLaunch is what the TDX module measures or copies when a TD starts.
type TDXLaunch struct {
	// MRTD is the build-time measurement of the TD.
	MRTD [48]byte
	// MRConfigID is MRCONFIGID: in Veil, the initdata digest zero-padded or truncated to 48 bytes.
	MRConfigID [48]byte
	// MROwner and MROwnerConfig are the owner fields the host sets; usually zero.
	MROwner, MROwnerConfig [48]byte
	// RTMRs are the runtime measurement registers at the time of the quote.
	RTMRs [4][48]byte
	// Debug sets TDATTRIBUTES.DEBUG.
	Debug bool
}

// Quote returns a signed TDX version 4 quote for the launch and reportData.
func (s *TDXSigner) Quote(l TDXLaunch, reportData [64]byte) ([]byte, error) {
	head := bytes.Clone(s.template)
	body := head[quoteHeaderSize:]
	if l.Debug {
		body[bodyTDAttrs] |= 1
	} else {
		body[bodyTDAttrs] &^= 1
	}
	copy(body[bodyMRTD:], l.MRTD[:])
	copy(body[bodyMRConfigID:], l.MRConfigID[:])
	copy(body[bodyMROwner:], l.MROwner[:])
	copy(body[bodyMROwnerCfg:], l.MROwnerConfig[:])
	for i, rtmr := range l.RTMRs {
		copy(body[bodyRTMRs+48*i:], rtmr[:])
	}
	copy(body[bodyReportData:], reportData[:])
	return s.SignQuote(head)
}

// SignQuote signs a quote header and body (0x278 bytes) and appends the signed data.
func (s *TDXSigner) SignQuote(headerAndBody []byte) ([]byte, error) {
	if len(headerAndBody) != quoteHeaderSize+quoteBodySize {
		return nil, fmt.Errorf("sim: header and body have %d bytes, want %d", len(headerAndBody), quoteHeaderSize+quoteBodySize)
	}
	sig, err := rawSign(s.attKey, headerAndBody)
	if err != nil {
		return nil, err
	}
	key, err := rawKey(&s.attKey.PublicKey)
	if err != nil {
		return nil, err
	}
	signed := append(sig, key...)
	signed = binary.LittleEndian.AppendUint16(signed, certDataQE)
	signed = binary.LittleEndian.AppendUint32(signed, uint32(len(s.qeCertData)))
	signed = append(signed, s.qeCertData...)
	out := append(bytes.Clone(headerAndBody), binary.LittleEndian.AppendUint32(nil, uint32(len(signed)))...)
	return append(out, signed...), nil
}

// rawSign is ECDSA P-256 over SHA-256(msg), as r || s, 32 bytes each, big-endian.
func rawSign(key *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	r, sv, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return nil, fmt.Errorf("sim: sign: %w", err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	sv.FillBytes(out[32:])
	return out, nil
}

// rawKey is a P-256 public key as X || Y, 32 bytes each.
func rawKey(k *ecdsa.PublicKey) ([]byte, error) {
	b, err := k.Bytes()
	if err != nil || len(b) != 65 {
		return nil, fmt.Errorf("sim: attestation key encoding: %v", err)
	}
	return b[1:], nil
}
