package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/veil-runtime/veil/attestation/tdx"
)

// Platform returns the signer of another TDX platform of the same model under the same sim root
// and PCK intermediate: a new PCK certificate (its own key and serial, the same SGX extension,
// so the same FMSPC, PCEID and TCB) certifying the QE report of a new attestation key. Its
// quotes verify with the same roots and match the same PCS collateral (TCBInfo, QEIdentity),
// and a PCK CRL can list one platform's PCK and not the other's. Only a signer made by
// NewAuthority has the intermediate key this needs.
func (s *TDXSigner) Platform(r io.Reader, now time.Time) (*TDXSigner, error) {
	if s.rootKey == nil || s.interKey == nil {
		return nil, errors.New("sim: this TDX signer has no CA keys (loaded from an authority file), so it cannot make another platform")
	}
	sgx, err := findExtension(s.PCK)
	if err != nil {
		return nil, err
	}
	pckKey, err := ecdsa.GenerateKey(elliptic.P256(), r)
	if err != nil {
		return nil, fmt.Errorf("sim: PCK key: %w", err)
	}
	pck, err := pckCertificate(r, sgx, s.Intermediate, s.interKey, &pckKey.PublicKey, now)
	if err != nil {
		return nil, err
	}
	p := &TDXSigner{Root: s.Root, Intermediate: s.Intermediate, PCK: pck, rootKey: s.rootKey, interKey: s.interKey,
		template: s.template}
	if p.attKey, err = ecdsa.GenerateKey(elliptic.P256(), r); err != nil {
		return nil, fmt.Errorf("sim: attestation key: %w", err)
	}
	sample, err := tdx.ParseQuote(testdata.RawQuote)
	if err != nil {
		return nil, fmt.Errorf("sim: go-tdx-guest sample quote: %w", err)
	}
	qe := sample.GetSignedData().GetCertificationData().GetQeReportCertificationData()
	if p.qeCertData, err = p.certifyQE(qe.GetQeReport(), qe.GetQeAuthData().GetData(), pckKey); err != nil {
		return nil, err
	}
	return p, nil
}
