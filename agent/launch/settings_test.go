package launch

import (
	"context"
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

	"github.com/veil-runtime/veil/agent/api"
)

func TestParseSettings(t *testing.T) {
	s, err := ParseSettings("[image]\ninsecure_registries = [\"10.88.77.1:5000\", \"registry.local\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Image.InsecureRegistries; len(got) != 2 || got[0] != "10.88.77.1:5000" || got[1] != "registry.local" {
		t.Fatalf("insecure registries %q", got)
	}
	for _, tc := range []struct{ text, want string }{
		{"[image]\ninsecure_registry = [\"a\"]\n", `unknown key "image.insecure_registry"`},
		{"[image]\ninsecure_registries = \"a\"\n", "veil.toml"},
		{"[image]\ninsecure_registries = [\"http://a\"]\n", "is not host or host:port"},
		{"[image\n", "veil.toml"},
	} {
		if _, err := ParseSettings(tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
}

// TestBootDiskSettings: the settings come from the measured document's veil.toml, and a bad
// one stops the boot like a bad policy.
func TestBootDiskSettings(t *testing.T) {
	ctx := context.Background()
	doc := goodDoc + "\"veil.toml\" = '''\n[image]\ninsecure_registries = [\"10.0.0.1:5000\"]\n'''\n"
	l, err := BootDisk(ctx, DefaultConfig(api.TEENone), writeDisk(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Settings.Image.InsecureRegistries; len(got) != 1 || got[0] != "10.0.0.1:5000" {
		t.Fatalf("insecure registries %q", got)
	}
	if l, err = BootDisk(ctx, DefaultConfig(api.TEENone), writeDisk(t, goodDoc)); err != nil || l.Settings.Image.InsecureRegistries != nil {
		t.Fatalf("without veil.toml: %+v, %v", l, err)
	}
	bad := goodDoc + "\"veil.toml\" = '''\n[imag]\n'''\n"
	if _, err := BootDisk(ctx, DefaultConfig(api.TEENone), writeDisk(t, bad)); err == nil || !strings.Contains(err.Error(), "veil.toml") {
		t.Fatalf("a bad veil.toml: %v", err)
	}
}

// testCertPEM makes a self-signed CA certificate in PEM form.
func testCertPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test KBS CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestParseKBSSettings: [kbs] url and ca_cert, and each refusal.
func TestParseKBSSettings(t *testing.T) {
	ca := testCertPEM(t)
	s, err := ParseSettings("[kbs]\nurl = \"https://kbs.example:8080\"\nca_cert = '''\n" + ca + "'''\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.KBS.URL != "https://kbs.example:8080" || s.KBS.CACert != ca {
		t.Fatalf("kbs settings %+v", s.KBS)
	}
	if pool, err := ParseCACert(s.KBS.CACert); err != nil || pool == nil {
		t.Fatalf("ParseCACert: %v", err)
	}
	if s, err := ParseSettings("[kbs]\nurl = \"http://k\"\nsealed_secret_keys = [\"kbs:///a/b/c\"]\n"); err != nil || len(s.KBS.SealedSecretKeys) != 1 {
		t.Fatalf("sealed_secret_keys: %+v, %v", s.KBS, err)
	}
	if s, err := ParseSettings("[kbs]\nurl = \"http://10.0.0.1:8080\"\n"); err != nil || s.KBS.URL != "http://10.0.0.1:8080" {
		t.Fatalf("plain http KBS: %+v, %v", s.KBS, err)
	}
	if s, err := ParseSettings("[image]\n"); err != nil || s.KBS.URL != "" || s.KBS.CACert != "" || s.KBS.SealedSecretKeys != nil {
		t.Fatalf("no [kbs]: %+v, %v", s.KBS, err)
	}
	keyPEM := "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
	for _, tc := range []struct{ text, want string }{
		{"[kbs]\nurl = \"kbs.example:8080\"\n", "want http(s)://host"},
		{"[kbs]\nurl = \"ftp://kbs\"\n", "want http(s)://host"},
		{"[kbs]\nurl = \"https://\"\n", "want http(s)://host"},
		{"[kbs]\nurl = \"https://user:pw@kbs\"\n", "want http(s)://host"},
		{"[kbs]\nurl = \"https://kbs/?x=1\"\n", "want http(s)://host"},
		{"[kbs]\nurls = \"https://kbs\"\n", `unknown key "kbs.urls"`},
		{"[kbs]\nurl = \"https://kbs\"\nsealed_secret_keys = [\"/etc/key\"]\n", "kbs.sealed_secret_keys"},
		{"[kbs]\nsealed_secret_keys = [\"kbs:///a/b/c\"]\n", "kbs.url is not"},
		{"[kbs]\nca_cert = '''\n" + ca + "'''\n", "kbs.url is not"},
		{"[kbs]\nurl = \"http://kbs\"\nca_cert = '''\n" + ca + "'''\n", "is not https"},
		{"[kbs]\nurl = \"https://kbs\"\nca_cert = \"not PEM\"\n", "kbs.ca_cert: text that is not PEM"},
		{"[kbs]\nurl = \"https://kbs\"\nca_cert = '''\n" + keyPEM + "'''\n", "only CERTIFICATE blocks"},
		{"[kbs]\nurl = \"https://kbs\"\nca_cert = '''\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'''\n", "certificate 1"},
	} {
		if _, err := ParseSettings(tc.text); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "veil.toml") {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
}

// TestBootDiskKBSSettings: the KBS URL comes from the measured document.
func TestBootDiskKBSSettings(t *testing.T) {
	doc := goodDoc + "\"veil.toml\" = '''\n[kbs]\nurl = \"http://10.0.2.2:8080\"\n'''\n"
	l, err := BootDisk(context.Background(), DefaultConfig(api.TEENone), writeDisk(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	if l.Settings.KBS.URL != "http://10.0.2.2:8080" {
		t.Fatalf("kbs url %q", l.Settings.KBS.URL)
	}
}
