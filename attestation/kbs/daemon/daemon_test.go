package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbswire/admin"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

func TestMain(m *testing.M) {
	log.L.Logger.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// First start creates the data directory's files with safe modes; a second start reuses them.
func TestFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := &Config{Data: dir}
	d, err := Prepare(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	lay := d.Layout()
	modes := map[string]os.FileMode{
		lay.TokenKey: 0o600, lay.AdminPrivateKey: 0o600, lay.AdminPublicKey: 0o644,
		lay.ResourcePolicy: 0o600, lay.AttestationPolicy: 0o600, lay.ReferenceValues: 0o600,
		lay.Dir: 0o700 | os.ModeDir, lay.Resources: 0o700 | os.ModeDir,
	}
	before := map[string][]byte{}
	for f, want := range modes {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", f, fi.Mode(), want)
		}
		if !fi.IsDir() {
			before[f], _ = os.ReadFile(f)
		}
	}
	d.store.Close()
	d2, err := Prepare(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d2.store.Close()
	for f, data := range before {
		if after, _ := os.ReadFile(f); string(after) != string(data) {
			t.Errorf("%s changed on the second start", f)
		}
	}
}

// With configured administrator keys, no key pair is made.
func TestConfiguredAdmin(t *testing.T) {
	base := t.TempDir()
	if _, err := admin.GenerateKeyPair(filepath.Join(base, "a.key"), filepath.Join(base, "a.pub")); err != nil {
		t.Fatal(err)
	}
	d, err := Prepare(t.Context(), &Config{Data: filepath.Join(base, "data"), AdminPublicKeys: []string{filepath.Join(base, "a.pub")}})
	if err != nil {
		t.Fatal(err)
	}
	d.store.Close()
	if _, err := os.Stat(d.Layout().AdminPrivateKey); !os.IsNotExist(err) {
		t.Fatalf("an administrator key was made although one is configured: %v", err)
	}
}

func TestParseFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kbs.toml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("listen = \"127.0.0.1:9\"\ndata = \"/x\"\nsession_ttl = \"2m\"\n[attestation]\ntoken_ttl = \"1m\"\n")
	cfg, err := ParseFlags("veil-kbs", []string{"--config", file, "--data", dir, "--max-sessions", "7"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9" || cfg.Data != dir || cfg.SessionTTL.Duration != 2*time.Minute ||
		cfg.Attestation.TokenTTL.Duration != time.Minute || cfg.MaxSessions != 7 {
		t.Fatalf("config %+v", cfg)
	}
	write("auth_rate = -1\nmax_clients = 300\nsession_key_file = \"" + file + "\"\n")
	cfg, err = ParseFlags("veil-kbs", []string{"--config", file, "--data", dir, "--auth-burst", "5", "--max-spent-nonces", "9"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AuthRate != -1 || cfg.AuthBurst != 5 || cfg.MaxSpentNonces != 9 || cfg.SessionKeyFile != file || cfg.MaxClients != 300 {
		t.Fatalf("config %+v", cfg)
	}
	tests := []struct {
		name    string
		file    string
		args    []string
		wantErr string
	}{
		{"missing session key", "", []string{"--data", dir, "--session-key-file", "/nonexistent/key"}, "nonexistent"},
		{"negative burst", "", []string{"--data", dir, "--auth-burst", "-1"}, "negative"},
		{"negative max clients", "", []string{"--data", dir, "--max-clients", "-1"}, "negative"},
		{"no data", "", nil, "no data directory"},
		{"unknown key", "listen = \"x\"\nfrobnicate = 1\n", []string{"--data", dir}, "unknown keys"},
		{"bad duration", "session_ttl = \"soon\"\n", []string{"--data", dir}, "duration"},
		{"half TLS", "", []string{"--data", dir, "--tls-cert", file}, "go together"},
		{"missing roots", "", []string{"--data", dir, "--sim-snp-roots", "/nonexistent"}, "nonexistent"},
		{"extra args", "", []string{"--data", dir, "serve"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				write(tt.file)
				args = append([]string{"--config", file}, args...)
			}
			_, err := ParseFlags("veil-kbs", args)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "veil-kbs test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// The daemon serves HTTPS with the configured certificate, and shuts down with its context.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	d, err := Prepare(t.Context(), &Config{Data: filepath.Join(dir, "data"), TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Post("https://"+ln.Addr().String()+"/kbs/v0/auth", "application/json",
		strings.NewReader(`{"version":"0.4.0","tee":"snp","extra-params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Cookies()[0].Name != protocol.SessionCookie {
		t.Fatalf("auth over TLS: %d", resp.StatusCode)
	}
	// The health endpoint over TLS, as the kubelet's HTTPS probe calls it.
	if resp, err = hc.Get("https://" + ln.Addr().String() + kbs.HealthPath); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health over TLS: %d", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + ln.Addr().String() + "/kbs/v0/auth"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the TLS listener: %d", resp.StatusCode)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}
