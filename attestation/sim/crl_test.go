package sim_test

import (
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"

	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"

	"github.com/veil-runtime/veil/attestation/sim"
)

// kdsGetter serves one URL, as AMD's KDS would.
type kdsGetter struct {
	url  string
	body []byte
}

func (g kdsGetter) Get(url string) ([]byte, error) {
	if url != g.url {
		return nil, errors.New("404 " + url)
	}
	return g.body, nil
}

// The sim CRL is in AMD's form: go-sev-guest fetches it from the ASK's distribution point,
// checks its ARK signature and finds a revoked ASK.
func TestCRLWithGoSevGuest(t *testing.T) {
	a := authority(t)
	for _, tc := range []struct {
		name    string
		revoked []*big.Int
		wantErr string
	}{
		{name: "nothing revoked"},
		{name: "ASK revoked", revoked: []*big.Int{a.SNP.ASK.SerialNumber}, wantErr: "ASK was revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := a.SNP.CRL(sim.CRLOptions{Revoked: tc.revoked})
			if err != nil {
				t.Fatal(err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if crl.SignatureAlgorithm != x509.SHA384WithRSAPSS || len(crl.RevokedCertificateEntries) != len(tc.revoked) ||
				!crl.NextUpdate.Equal(crl.ThisUpdate.AddDate(0, 0, 7)) {
				t.Fatalf("CRL: %v, %d entries, %v..%v", crl.SignatureAlgorithm, len(crl.RevokedCertificateEntries), crl.ThisUpdate, crl.NextUpdate)
			}
			root := &trust.AMDRootCerts{ProductLine: a.SNP.ProductLine, ProductCerts: &trust.ProductCerts{Ark: a.SNP.ARK, Ask: a.SNP.ASK}}
			g := kdsGetter{url: a.SNP.ASK.CRLDistributionPoints[0], body: der}
			_, err = sevverify.GetCrlAndCheckRoot(root, &sevverify.Options{Getter: g, Now: crl.ThisUpdate})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("go-sev-guest CRL check = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// An authority read from its file has no ARK key and says it cannot sign a CRL.
func TestCRLNeedsARKKey(t *testing.T) {
	pemData, err := authority(t).MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := sim.ParseAuthority(pemData)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.SNP.CRL(sim.CRLOptions{}); err == nil || !strings.Contains(err.Error(), "no ARK key") {
		t.Fatalf("CRL from a loaded authority = %v", err)
	}
}
