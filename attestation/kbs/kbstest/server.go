package kbstest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/resourcepolicy"
	"github.com/veil-runtime/veil/attestation/kbs/store"
	"github.com/veil-runtime/veil/attestation/kbswire/admin"
)

// Env is a KBS on loopback with a fake attestation service.
type Env struct {
	HTTP        *httptest.Server
	KBS         *kbs.Server
	Attestation *Attestation
	Store       *store.Dir
	Policy      *resourcepolicy.Engine
	AdminKey    ed25519.PrivateKey
}

// URL returns the KBS's base URL.
func (e *Env) URL() string { return e.HTTP.URL }

// AdminToken returns a valid administrator token.
func (e *Env) AdminToken(tb testing.TB) string {
	tb.Helper()
	tok, err := admin.Token(e.AdminKey, time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// NewServer starts a KBS with the default resource policy, an empty store under a temporary
// directory and a new administrator key. edit, when given, may change the options (the
// attestation service, store and policy are already set). The per-client rate limits are off
// (AuthRate -1), since tests and benchmarks run many handshakes from one loopback address;
// edit may set them. The server stops at the end of the test.
func NewServer(tb testing.TB, edit func(*kbs.Options)) *Env {
	tb.Helper()
	dir := tb.TempDir()
	st, err := store.OpenDir(filepath.Join(dir, "resources"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	pol, err := resourcepolicy.Open(context.Background(), filepath.Join(dir, "resource-policy.rego"),
		filepath.Join(dir, "repository-bindings.json"))
	if err != nil {
		tb.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	att := NewAttestation()
	opts := kbs.Options{Attestation: att, Tokens: att, Resources: st, Policy: pol, Admin: admin.NewVerifier(pub), AuthRate: -1}
	if edit != nil {
		edit(&opts)
	}
	srv, err := kbs.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	tb.Cleanup(hs.Close)
	return &Env{HTTP: hs, KBS: srv, Attestation: att, Store: st, Policy: pol, AdminKey: priv}
}

// WriteAdminKey writes the administrator's private key as veil-kbs-client and
// veil-keyprovider read it (--admin-key: PKCS #8 PEM, mode 0600) and returns the file.
func (e *Env) WriteAdminKey(tb testing.TB) string {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(e.AdminKey)
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(tb.TempDir(), "admin.key")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return file
}
