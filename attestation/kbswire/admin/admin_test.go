package admin

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuthorize(t *testing.T) {
	dir := t.TempDir()
	pub, err := GenerateKeyPair(filepath.Join(dir, "admin.key"), filepath.Join(dir, "admin.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "admin.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", fi.Mode())
	}
	if _, err := GenerateKeyPair(filepath.Join(dir, "admin.key"), filepath.Join(dir, "x.pub")); err == nil {
		t.Fatal("an existing key was overwritten")
	}
	priv, err := LoadPrivateKey(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadPublicKey(filepath.Join(dir, "admin.pub"))
	if err != nil || !loaded.Equal(pub) {
		t.Fatalf("LoadPublicKey: %v", err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	valid := jwt.Claims{Expiry: jwt.NewNumericDate(now.Add(time.Minute))}
	good, err := Token(priv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, header, wantErr string
	}{
		{"good", "Bearer " + good, ""},
		{"no header", "", "no bearer token"},
		{"basic auth", "Basic YTpi", "no bearer token"},
		{"garbage", "Bearer abc", "admin access denied"},
		{"other key", "Bearer " + signWith(t, jose.EdDSA, otherPriv, valid), "not signed by a trusted"},
		{"ES256", "Bearer " + signWith(t, jose.ES256, ecKey, valid), "admin access denied"},
		{"expired", "Bearer " + signWith(t, jose.EdDSA, priv, jwt.Claims{Expiry: jwt.NewNumericDate(now.Add(-time.Hour))}), "expired"},
		{"no exp", "Bearer " + signWith(t, jose.EdDSA, priv, jwt.Claims{IssuedAt: jwt.NewNumericDate(now)}), "no exp"},
		{"future nbf", "Bearer " + signWith(t, jose.EdDSA, priv, jwt.Claims{Expiry: jwt.NewNumericDate(now.Add(3 * time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(2 * time.Hour))}), "not valid yet"},
		{"tampered", "Bearer " + tamper(good), "admin access denied"},
	}
	v := NewVerifier(pub)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/kbs/v0/resource-policy", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			err := v.Authorize(r)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Authorize: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrDenied) {
				t.Fatalf("Authorize error %v, want %q", err, tt.wantErr)
			}
		})
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Authorization", "Bearer "+good)
	if err := NewVerifier().Authorize(r); err == nil {
		t.Fatal("a verifier without keys accepted a token")
	}
}

// tamper changes one character in the middle of the token's signature.
func tamper(tok string) string {
	i := strings.LastIndex(tok, ".") + 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
