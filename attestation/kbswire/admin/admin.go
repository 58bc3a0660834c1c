// Package admin authenticates the KBS's administrator as Trustee does: every administrative
// request carries "Authorization: Bearer <JWT>", a JWT signed with EdDSA (Ed25519) by the
// administrator's private key, and the KBS holds the matching public key (PEM,
// SubjectPublicKeyInfo). It also makes such tokens and key pairs, for veil-kbs's first start
// and for admin clients.
package admin

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrDenied is wrapped by every refusal of Authorize.
var ErrDenied = errors.New("admin access denied")

// DefaultTokenTTL is the lifetime of the tokens that Token makes.
const DefaultTokenTTL = 5 * time.Minute

// leeway tolerates clock skew between the administrator and the KBS.
const leeway = time.Minute

// maxTokenBytes bounds the Authorization header that is parsed.
const maxTokenBytes = 8 << 10

// Verifier checks administrator tokens against a set of trusted Ed25519 public keys.
type Verifier struct {
	keys []ed25519.PublicKey
	now  func() time.Time
}

// NewVerifier returns a Verifier that trusts these keys. With no keys it refuses everything.
func NewVerifier(keys ...ed25519.PublicKey) *Verifier {
	return &Verifier{keys: keys, now: time.Now}
}

// Authorize checks the request's bearer token: an EdDSA-signed JWT from a trusted key, with an
// "exp" claim in the future (and "nbf", "iat" if present, not in the future).
func (v *Verifier) Authorize(r *http.Request) error {
	auth := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || raw == "" {
		return fmt.Errorf("%w: no bearer token", ErrDenied)
	}
	if len(raw) > maxTokenBytes {
		return fmt.Errorf("%w: token longer than %d bytes", ErrDenied, maxTokenBytes)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDenied, err)
	}
	if len(v.keys) == 0 {
		return fmt.Errorf("%w: no administrator key is configured", ErrDenied)
	}
	for _, key := range v.keys {
		var claims jwt.Claims
		if err := tok.Claims(key, &claims); err != nil {
			continue
		}
		if claims.Expiry == nil {
			return fmt.Errorf("%w: token has no exp claim", ErrDenied)
		}
		if err := claims.ValidateWithLeeway(jwt.Expected{Time: v.now()}, leeway); err != nil {
			return fmt.Errorf("%w: %w", ErrDenied, err)
		}
		return nil
	}
	return fmt.Errorf("%w: token not signed by a trusted administrator key", ErrDenied)
}

// Token returns an administrator token signed with key, valid for ttl from now.
func Token(key ed25519.PrivateKey, ttl time.Duration) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	now := time.Now()
	claims := jwt.Claims{IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl))}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return tok, nil
}

// GenerateKeyPair writes a new Ed25519 key pair: the private key (PKCS #8 PEM) to privFile
// with mode 0600, the public key (SubjectPublicKeyInfo PEM) to pubFile with mode 0644. It
// refuses to overwrite an existing file.
func GenerateKeyPair(privFile, pubFile string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	if err := writeNew(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	return pub, nil
}

func writeNew(file string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// LoadPublicKey reads an Ed25519 public key from a PEM file (SubjectPublicKeyInfo).
func LoadPublicKey(file string) (ed25519.PublicKey, error) {
	der, err := readPEM(file, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("admin public key %s: %w", file, err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("admin public key %s: %T is not an Ed25519 key", file, key)
	}
	return pub, nil
}

// LoadPrivateKey reads an Ed25519 private key from a PEM file (PKCS #8).
func LoadPrivateKey(file string) (ed25519.PrivateKey, error) {
	der, err := readPEM(file, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("admin private key %s: %w", file, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("admin private key %s: %T is not an Ed25519 key", file, key)
	}
	return priv, nil
}

func readPEM(file, typ string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("key %s: no PEM block of type %q", file, typ)
	}
	return block.Bytes, nil
}
