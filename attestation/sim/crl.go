package sim

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// CRLOptions describe a CRL that SNPSigner.CRL makes.
type CRLOptions struct {
	// Revoked are the serial numbers on the CRL (SNPSigner.ASK.SerialNumber,
	// SNPSigner.VCEK.SerialNumber, or any other).
	Revoked []*big.Int
	// ThisUpdate is the CRL's issue time; NextUpdate when the next one is due (AMD's CRLs: a
	// week later). Zero ThisUpdate means the ARK's NotBefore; zero NextUpdate, ThisUpdate plus
	// seven days.
	ThisUpdate, NextUpdate time.Time
	// Number is the CRL number; 0 means 1.
	Number int64
}

// CRL returns a CRL of the sim ARK in the form AMD's KDS serves at
// https://kdsintf.amd.com/vcek/v1/<product line>/crl: DER, signed by the ARK with RSA-PSS
// SHA-384. Only an authority made by NewAuthority can sign one: the authority file does not
// keep the ARK's key.
func (s *SNPSigner) CRL(o CRLOptions) ([]byte, error) {
	if s.arkKey == nil {
		return nil, errors.New("sim: this SNP signer has no ARK key (loaded from an authority file), so it cannot sign a CRL")
	}
	if o.ThisUpdate.IsZero() {
		o.ThisUpdate = s.ARK.NotBefore
	}
	if o.NextUpdate.IsZero() {
		o.NextUpdate = o.ThisUpdate.AddDate(0, 0, 7)
	}
	if o.Number == 0 {
		o.Number = 1
	}
	tmpl := &x509.RevocationList{
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		Number:             big.NewInt(o.Number),
		ThisUpdate:         o.ThisUpdate,
		NextUpdate:         o.NextUpdate,
	}
	for _, serial := range o.Revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: serial, RevocationTime: o.ThisUpdate})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, s.ARK, s.arkKey)
	if err != nil {
		return nil, fmt.Errorf("sim: CRL: %w", err)
	}
	return der, nil
}
