package evidence

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

func testCertPEM(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestParseCertificatesPEM(t *testing.T) {
	a, b := testCertPEM(t, "a"), testCertPEM(t, "b")
	other := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not a certificate")})
	bundle := append(append(append([]byte("comment\n"), a...), other...), b...)
	certs, err := ParseCertificatesPEM(bundle)
	if err != nil || len(certs) != 2 || certs[0].Subject.CommonName != "a" || certs[1].Subject.CommonName != "b" {
		t.Fatalf("ParseCertificatesPEM = %d certificates, %v; want a, b", len(certs), err)
	}
	if certs, err := ParseCertificatesPEM([]byte("nothing")); err != nil || len(certs) != 0 {
		t.Errorf("no PEM: %d certificates, %v", len(certs), err)
	}
	broken := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})
	if _, err := ParseCertificatesPEM(append(a, broken...)); err == nil || !strings.Contains(err.Error(), "certificate 2") {
		t.Errorf("a broken second certificate: %v", err)
	}
}
