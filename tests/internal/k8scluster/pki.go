package k8scluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// ca is the cluster's one certificate authority: it signs every serving and client
// certificate (etcd's, the apiserver's, the kubelet's, the clients').
type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
	dir  string // where the files go (the cluster's pki directory)
}

// newCA makes a CA and writes ca.crt in dir.
func newCA(dir string) (*ca, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "veil-test-kubernetes-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := &ca{cert: cert, key: key, dir: dir}
	return c, writePEM(c.path("ca.crt"), "CERTIFICATE", der)
}

// path is name in the pki directory.
func (c *ca) path(name string) string { return filepath.Join(c.dir, name) }

// certSpec is a certificate to issue: its subject, its SANs (IP addresses and DNS names) and
// whether it serves, is a client, or both.
type certSpec struct {
	name   string   // files name.crt and name.key
	cn     string   // the common name (a client's user name)
	orgs   []string // organizations (a client's groups)
	ips    []string // IP SANs
	dns    []string // DNS SANs
	server bool
	client bool
}

// issue makes the certificate spec describes, writes name.crt and name.key, and returns their
// paths.
func (c *ca) issue(spec certSpec) (certPath, keyPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: spec.cn, Organization: spec.orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     spec.dns,
	}
	for _, ip := range spec.ips {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return "", "", fmt.Errorf("certificate %s: bad IP %q", spec.name, ip)
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, parsed)
	}
	if spec.server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = c.path(spec.name+".crt"), c.path(spec.name+".key")
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	return certPath, keyPath, writePEM(keyPath, "PRIVATE KEY", keyDER)
}

// serviceAccountKeys writes the RSA key pair that signs and verifies service-account tokens
// (sa.key, sa.pub).
func (c *ca) serviceAccountKeys() (keyPath, pubPath string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", err
	}
	keyPath, pubPath = c.path("sa.key"), c.path("sa.pub")
	if err := writePEM(keyPath, "PRIVATE KEY", keyDER); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, writePEM(pubPath, "PUBLIC KEY", pubDER)
}

// kubeconfig writes a kubeconfig at path for the user of the client certificate
// certPath/keyPath on the apiserver at server, trusting the CA.
func (c *ca) kubeconfig(path, server, user, certPath, keyPath string) error {
	data := func(p string) (string, error) {
		b, err := os.ReadFile(p)
		return base64.StdEncoding.EncodeToString(b), err
	}
	caData, err := data(c.path("ca.crt"))
	if err != nil {
		return err
	}
	certData, err := data(certPath)
	if err != nil {
		return err
	}
	keyData, err := data(keyPath)
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: veil-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: veil-test
  context:
    cluster: veil-test
    user: %s
current-context: veil-test
`, server, caData, user, certData, keyData, user)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}
