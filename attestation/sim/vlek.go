package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"

	"github.com/veil-runtime/veil/attestation/evidence"
)

// VLEKSigner returns a signer under the same ARK whose reports are signed by a VLEK, as a
// cloud provider's platform signs them: an ASVK ("SEV-VLEK-<line>", signed by the ARK; it reuses
// the ASK's RSA-4096 key, which saves tests a key generation and changes nothing a verifier
// checks) in the ASK field, and a VLEK (P-384, KDS extensions with the TCB, the product name and a CSP_ID
// instead of the HWID, signed by the ASVK) in the VCEK field. Its reports carry SIGNER_INFO
// SIGNING_KEY = VLEK and its certificate table the VLEK. Only a signer made by NewAuthority has
// the ARK key this needs. The roots a verifier needs: ARK and ASVK (RootsPEM).
func (s *SNPSigner) VLEKSigner(r io.Reader, cspID string, now time.Time) (*SNPSigner, error) {
	if s.arkKey == nil || s.askKey == nil {
		return nil, errors.New("sim: this SNP signer has no ARK key (loaded from an authority file), so it cannot make a VLEK")
	}
	if s.vlek {
		return nil, errors.New("sim: this SNP signer is a VLEK signer already")
	}
	asvkKey := s.askKey
	vlekKey, err := ecdsa.GenerateKey(elliptic.P384(), r)
	if err != nil {
		return nil, fmt.Errorf("sim: VLEK key: %w", err)
	}
	asvk := caTemplate(r, amdName("SEV-VLEK-"+s.ProductLine), now, 25, kds.CrlLinkByKey(s.ProductLine, abi.VlekReportSigner))
	asvk.KeyUsage = x509.KeyUsageCertSign
	asvkCert, err := sign(r, asvk, s.ARK, &asvkKey.PublicKey, s.arkKey)
	if err != nil {
		return nil, fmt.Errorf("sim: ASVK: %w", err)
	}
	vlek, err := vcekTemplate(r, s.ProductLine, s.tcb, now)
	if err != nil {
		return nil, err
	}
	vlek.Subject = amdName("SEV-VLEK")
	csp, err := asn1.MarshalWithParams(cspID, "ia5")
	if err != nil {
		return nil, err
	}
	for i, e := range vlek.ExtraExtensions {
		if e.Id.Equal(kds.OidHwid) {
			vlek.ExtraExtensions[i].Id, vlek.ExtraExtensions[i].Value = kds.OidCspID, csp
		}
	}
	vlekCert, err := sign(r, vlek, asvkCert, &vlekKey.PublicKey, asvkKey)
	if err != nil {
		return nil, fmt.Errorf("sim: VLEK: %w", err)
	}
	return &SNPSigner{ProductLine: s.ProductLine, ARK: s.ARK, ASK: asvkCert, VCEK: vlekCert, vcekKey: vlekKey,
		arkKey: s.arkKey, askKey: asvkKey, tcb: s.tcb, vlek: true}, nil
}

// vlekSignerInfo sets SIGNER_INFO SIGNING_KEY = VLEK in a report of a VLEK signer.
func (s *SNPSigner) vlekSignerInfo(raw []byte) {
	if s.vlek {
		info := abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: abi.VlekReportSigner})
		binary.LittleEndian.PutUint32(raw[0x48:], info)
	}
}

// RootsPEM returns the signer's ARK and its ASK (or, for a VLEK signer, ASVK) in PEM, in the
// form snp.ParseRoots reads.
func (s *SNPSigner) RootsPEM() []byte { return append(pemCert(s.ASK), pemCert(s.ARK)...) }

// certTableEntry is the certificate table entry of the endorsement key.
func (s *SNPSigner) certTableEntry() evidence.CertTableEntry {
	typ := evidence.CertVCEK
	if s.vlek {
		typ = evidence.CertVLEK
	}
	return evidence.CertTableEntry{Type: typ, GUID: evidence.GUIDOfCertType(typ), Data: s.VCEK.Raw}
}
