package sealed

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	josecipher "github.com/go-jose/go-jose/v4/cipher"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// gcmNonce is the iv length of A256GCM; keySize the size of a KEK and of a data key.
const (
	gcmNonce = 12
	keySize  = 32
)

// Refusals besides ErrMalformed, reachable with errors.Is.
var (
	// ErrSignature: the JWS signature does not verify with the key its kid names.
	ErrSignature = errors.New("sealed secret signature does not verify")
	// ErrUntrustedKey: the kid is not one of the keys the guest's measured configuration trusts.
	ErrUntrustedKey = errors.New("sealed secret signed with a key that is not trusted")
	// ErrKey: a key (verification key, KEK) is not of the form it must have.
	ErrKey = errors.New("unusable key")
	// ErrDecrypt: an envelope's KEK does not unwrap its data key, or its data does not decrypt.
	ErrDecrypt = errors.New("sealed envelope does not decrypt")
)

// Fetcher gets KBS resources by kbs:///repo/type/tag URI after attestation (agent/cdh.Hub).
type Fetcher interface {
	GetResource(ctx context.Context, uri string) ([]byte, error)
}

// Verify checks value's form and signature and returns its secret and the kid that signed
// it. The protected header must be {"alg":"ES256","kid":"kbs:///..."}; when trusted is not
// empty, the kid must be one of its URIs. The key is fetched from f.
func Verify(ctx context.Context, value string, f Fetcher, trusted []string) (*Secret, string, error) {
	compact, err := splitValue(value)
	if err != nil {
		return nil, "", err
	}
	obj, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, "", malformed("JWS: %v (want the protected header {\"alg\":\"ES256\",\"kid\":\"kbs:///...\"})", err)
	}
	if len(obj.Signatures) != 1 {
		return nil, "", malformed("JWS has %d signatures, want 1", len(obj.Signatures))
	}
	kid := obj.Signatures[0].Protected.KeyID
	if kid == "" {
		return nil, "", malformed("the protected header has no kid (the kbs:/// URI of the verification key)")
	}
	if _, err := protocol.ParseResourceURI(kid); err != nil {
		return nil, "", malformed("the protected header's kid: %v", err)
	}
	if len(trusted) > 0 && !slices.Contains(trusted, kid) {
		return nil, kid, fmt.Errorf("%w: kid %s is not among the trusted keys %s", ErrUntrustedKey, kid, strings.Join(trusted, ", "))
	}
	if f == nil {
		return nil, kid, errors.New("no KBS to fetch the verification key from (initdata veil.toml [kbs] url)")
	}
	raw, err := f.GetResource(ctx, kid)
	if err != nil {
		return nil, kid, fmt.Errorf("verification key %s: %w", kid, err)
	}
	pub, err := ParsePublicKey(raw)
	if err != nil {
		return nil, kid, fmt.Errorf("verification key %s: %w", kid, err)
	}
	payload, err := obj.Verify(pub)
	if err != nil {
		return nil, kid, fmt.Errorf("%w with key %s", ErrSignature, kid)
	}
	s, err := ParseSecret(payload)
	if err != nil {
		return nil, kid, err
	}
	return s, kid, nil
}

// Open verifies value (Verify) and unseals it: the plaintext of the secret.
func Open(ctx context.Context, value string, f Fetcher, trusted []string) ([]byte, error) {
	s, _, err := Verify(ctx, value, f, trusted)
	if err != nil {
		return nil, err
	}
	return s.Unseal(ctx, f)
}

// Unseal returns the plaintext of a checked secret: a vault's resource, or an envelope's
// data opened with the data key that its KEK resource unwraps.
func (s *Secret) Unseal(ctx context.Context, f Fetcher) ([]byte, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if f == nil {
		return nil, errors.New("no KBS to fetch the secret from (initdata veil.toml [kbs] url)")
	}
	if s.Type == TypeVault {
		data, err := f.GetResource(ctx, s.Name)
		if err != nil {
			return nil, fmt.Errorf("vault secret %s: %w", s.Name, err)
		}
		return data, nil
	}
	kek, err := f.GetResource(ctx, s.KeyID)
	if err != nil {
		return nil, fmt.Errorf("envelope key %s: %w", s.KeyID, err)
	}
	defer clear(kek)
	if len(kek) != keySize {
		return nil, fmt.Errorf("envelope key %s: %w: it is %d bytes, want %d (AES-256)", s.KeyID, ErrKey, len(kek), keySize)
	}
	wrapped, _ := base64.StdEncoding.DecodeString(s.EncryptedKey)
	data, _ := base64.StdEncoding.DecodeString(s.EncryptedData)
	iv, _ := base64.StdEncoding.DecodeString(s.IV)
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("envelope key %s: %w: %v", s.KeyID, ErrKey, err)
	}
	dek, err := josecipher.KeyUnwrap(block, wrapped)
	if err != nil || len(dek) != keySize {
		return nil, fmt.Errorf("%w: key %s does not unwrap encrypted_key (another KEK?)", ErrDecrypt, s.KeyID)
	}
	defer clear(dek)
	gcm, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	out, err := gcm.Open(nil, iv, data, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted_data fails authentication", ErrDecrypt)
	}
	return out, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return cipher.NewGCM(block)
}

// NewEnvelope encrypts plaintext with a fresh data key (AES-256-GCM) and wraps the data key
// with kek (32 bytes, RFC 3394), the resource keyID. rnd nil means crypto/rand.
func NewEnvelope(plaintext, kek []byte, keyID string, rnd io.Reader) (*Secret, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if len(kek) != keySize {
		return nil, fmt.Errorf("%w: the KEK is %d bytes, want %d (AES-256)", ErrKey, len(kek), keySize)
	}
	dek := make([]byte, keySize)
	defer clear(dek)
	iv := make([]byte, gcmNonce)
	if _, err := io.ReadFull(rnd, dek); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return nil, err
	}
	gcm, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	wrapped, err := josecipher.KeyWrap(block, dek)
	if err != nil {
		return nil, err
	}
	b64 := base64.StdEncoding.EncodeToString
	s := &Secret{Version: Version, Type: TypeEnvelope, KeyID: keyID, EncryptedKey: b64(wrapped),
		EncryptedData: b64(gcm.Seal(nil, iv, plaintext, nil)), WrapType: WrapA256GCM, IV: b64(iv),
		Provider: ProviderKBS, ProviderSettings: map[string]any{}, Annotations: map[string]any{}}
	return s, s.Check()
}

// Seal signs s with key (ES256) under kid, the kbs:/// URI where the guest finds the public
// key, and returns the sealed value.
func Seal(s *Secret, key *ecdsa.PrivateKey, kid string) (string, error) {
	if err := s.Check(); err != nil {
		return "", err
	}
	if _, err := protocol.ParseResourceURI(kid); err != nil {
		return "", fmt.Errorf("kid: %w", err)
	}
	if key == nil || key.Curve != elliptic.P256() {
		return "", fmt.Errorf("%w: the signing key must be an EC P-256 private key", ErrKey)
	}
	payload, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		return "", err
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	compact, err := obj.CompactSerialize()
	if err != nil {
		return "", err
	}
	return Prefix + compact, nil
}

// ParsePublicKey reads an EC P-256 public key: a JWK (CoCo's form; a private JWK gives its
// public half) or a PEM "PUBLIC KEY".
func ParsePublicKey(b []byte) (*ecdsa.PublicKey, error) {
	b = []byte(strings.TrimSpace(string(b)))
	var k any
	if len(b) > 0 && b[0] == '{' {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%w: JWK: %v", ErrKey, err)
		}
		k = jwk.Key
		if priv, ok := k.(*ecdsa.PrivateKey); ok {
			k = &priv.PublicKey
		}
	} else {
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%w: neither a JWK nor a PEM PUBLIC KEY", ErrKey)
		}
		var err error
		if k, err = x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: want an EC P-256 public key, got %T", ErrKey, k)
	}
	return pub, nil
}

// ParsePrivateKey reads an EC P-256 private key: a JWK (CoCo's secret CLI uses one) or PEM
// ("EC PRIVATE KEY" or "PRIVATE KEY").
func ParsePrivateKey(b []byte) (*ecdsa.PrivateKey, error) {
	b = []byte(strings.TrimSpace(string(b)))
	var k any
	if len(b) > 0 && b[0] == '{' {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("%w: JWK: %v", ErrKey, err)
		}
		k = jwk.Key
	} else {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%w: neither a JWK nor PEM", ErrKey)
		}
		var err error
		switch blk.Type {
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		default:
			return nil, fmt.Errorf("%w: PEM block %q, want EC PRIVATE KEY or PRIVATE KEY", ErrKey, blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrKey, err)
		}
	}
	priv, ok := k.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: want an EC P-256 private key, got %T", ErrKey, k)
	}
	return priv, nil
}

// PublicJWK returns pub as a JWK, the form of the verification key resource.
func PublicJWK(pub *ecdsa.PublicKey) ([]byte, error) {
	return jose.JSONWebKey{Key: pub, Algorithm: string(jose.ES256), Use: "sig"}.MarshalJSON()
}

// GenerateKey returns a new EC P-256 signing key.
func GenerateKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
