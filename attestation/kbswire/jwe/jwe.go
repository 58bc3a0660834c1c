package jwe

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// cekSize is the size of the A256GCM content encryption key.
const cekSize = 32

// JWE is the flattened JSON serialisation the KBS sends for a resource. Every field is
// base64url without padding; Protected is the encoded header and, as ASCII, the AEAD
// additional data.
type JWE struct {
	Protected    string `json:"protected"`
	EncryptedKey string `json:"encrypted_key"`
	IV           string `json:"iv"`
	Ciphertext   string `json:"ciphertext"`
	Tag          string `json:"tag"`
}

// Header is the decoded protected header.
type Header struct {
	Alg string `json:"alg"`
	Enc string `json:"enc"`
	EPK *JWK   `json:"epk,omitempty"`
}

// Encrypt seals plaintext to pub, an EC P-256 key (*ecdh.PublicKey or *ecdsa.PublicKey) or an
// RSA key, as ParsePublicJWK returns them.
func Encrypt(pub crypto.PublicKey, plaintext []byte) (*JWE, error) {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		ek, err := k.ECDH()
		if err != nil {
			return nil, fmt.Errorf("JWE: %w", err)
		}
		pub = ek
	}
	cek := make([]byte, cekSize)
	if _, err := rand.Read(cek); err != nil {
		return nil, fmt.Errorf("JWE: content key: %w", err)
	}
	defer clear(cek)
	var header string
	var encKey []byte
	switch pub := pub.(type) {
	case *ecdh.PublicKey:
		var err error
		header, encKey, err = wrapECDH(pub, cek)
		if err != nil {
			return nil, err
		}
	case *rsa.PublicKey:
		var err error
		encKey, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, cek, nil)
		if err != nil {
			return nil, fmt.Errorf("JWE: RSA-OAEP-256: %w", err)
		}
		header = `{"alg":"` + AlgRSAOAEP256 + `","enc":"` + EncA256GCM + `"}`
	default:
		return nil, fmt.Errorf("JWE: unsupported key type %T", pub)
	}
	protected := b64.EncodeToString([]byte(header))
	iv, sealed, err := seal(cek, plaintext, []byte(protected))
	if err != nil {
		return nil, err
	}
	ct, tag := sealed[:len(sealed)-16], sealed[len(sealed)-16:]
	return &JWE{
		Protected:    protected,
		EncryptedKey: b64.EncodeToString(encKey),
		IV:           b64.EncodeToString(iv),
		Ciphertext:   b64.EncodeToString(ct),
		Tag:          b64.EncodeToString(tag),
	}, nil
}

// wrapECDH makes an ephemeral key, derives the key-encryption key and wraps cek. It returns
// the protected header, written with its keys in the order of the reference implementation.
func wrapECDH(pub *ecdh.PublicKey, cek []byte) (string, []byte, error) {
	if pub.Curve() != ecdh.P256() {
		return "", nil, errors.New("JWE: only P-256 keys are supported")
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("JWE: ephemeral key: %w", err)
	}
	z, err := eph.ECDH(pub)
	if err != nil {
		return "", nil, fmt.Errorf("JWE: ECDH: %w", err)
	}
	kek := concatKDF(z, AlgECDHESA256KW)
	clear(z)
	encKey, err := keyWrap(kek, cek)
	clear(kek)
	if err != nil {
		return "", nil, fmt.Errorf("JWE: %w", err)
	}
	x, y := splitPoint(eph.PublicKey().Bytes())
	header := `{"alg":"` + AlgECDHESA256KW + `","enc":"` + EncA256GCM + `","epk":{"crv":"` + CurveP256 +
		`","kty":"EC","x":"` + b64.EncodeToString(x) + `","y":"` + b64.EncodeToString(y) + `"}}`
	return header, encKey, nil
}

// concatKDF derives a 256-bit key from the shared secret z (RFC 7518 section 4.6.2: one round
// of SHA-256, AlgorithmID alg, empty PartyUInfo and PartyVInfo, SuppPubInfo 256).
func concatKDF(z []byte, alg string) []byte {
	h := sha256.New()
	var u32 [4]byte
	put := func(v uint32) {
		binary.BigEndian.PutUint32(u32[:], v)
		h.Write(u32[:])
	}
	put(1)
	h.Write(z)
	put(uint32(len(alg)))
	h.Write([]byte(alg))
	put(0) // PartyUInfo
	put(0) // PartyVInfo
	put(cekSize * 8)
	return h.Sum(nil)
}

func seal(cek, plaintext, aad []byte) (iv, sealed []byte, err error) {
	aead, err := newGCM(cek)
	if err != nil {
		return nil, nil, err
	}
	iv = make([]byte, aead.NonceSize())
	if _, err := rand.Read(iv); err != nil {
		return nil, nil, fmt.Errorf("JWE: IV: %w", err)
	}
	return iv, aead.Seal(nil, iv, plaintext, aad), nil
}

func newGCM(cek []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("JWE: content cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("JWE: content cipher: %w", err)
	}
	return aead, nil
}

// Decrypt opens a JWE with the private key whose public half it was sealed to:
// *ecdh.PrivateKey or *ecdsa.PrivateKey on P-256, or *rsa.PrivateKey.
func Decrypt(priv crypto.PrivateKey, j *JWE) ([]byte, error) {
	rawHeader, err := b64.DecodeString(j.Protected)
	if err != nil {
		return nil, fmt.Errorf("JWE: protected header: %w", err)
	}
	var h Header
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return nil, fmt.Errorf("JWE: protected header: %w", err)
	}
	if h.Enc != EncA256GCM {
		return nil, fmt.Errorf("JWE: content encryption %q not supported (want %s)", h.Enc, EncA256GCM)
	}
	encKey, err := b64.DecodeString(j.EncryptedKey)
	if err != nil {
		return nil, fmt.Errorf("JWE: encrypted_key: %w", err)
	}
	cek, err := unwrapCEK(priv, h, encKey)
	if err != nil {
		return nil, err
	}
	defer clear(cek)
	return open(cek, j)
}

func unwrapCEK(priv crypto.PrivateKey, h Header, encKey []byte) ([]byte, error) {
	switch priv := priv.(type) {
	case *ecdsa.PrivateKey:
		ek, err := priv.ECDH()
		if err != nil {
			return nil, fmt.Errorf("JWE: %w", err)
		}
		return unwrapCEK(ek, h, encKey)
	case *ecdh.PrivateKey:
		if h.Alg != AlgECDHESA256KW || h.EPK == nil {
			return nil, fmt.Errorf("JWE: alg %q with an EC key, want %s with epk", h.Alg, AlgECDHESA256KW)
		}
		epk, err := parseEC(JWK{Kty: h.EPK.Kty, Crv: h.EPK.Crv, Alg: AlgECDHESA256KW, X: h.EPK.X, Y: h.EPK.Y})
		if err != nil {
			return nil, fmt.Errorf("JWE: epk: %w", err)
		}
		z, err := priv.ECDH(epk)
		if err != nil {
			return nil, fmt.Errorf("JWE: ECDH: %w", err)
		}
		kek := concatKDF(z, AlgECDHESA256KW)
		clear(z)
		defer clear(kek)
		cek, err := keyUnwrap(kek, encKey)
		if err != nil {
			return nil, fmt.Errorf("JWE: %w", err)
		}
		return cek, nil
	case *rsa.PrivateKey:
		if h.Alg != AlgRSAOAEP256 {
			return nil, fmt.Errorf("JWE: alg %q with an RSA key, want %s", h.Alg, AlgRSAOAEP256)
		}
		cek, err := rsa.DecryptOAEP(sha256.New(), nil, priv, encKey, nil)
		if err != nil {
			return nil, fmt.Errorf("JWE: RSA-OAEP-256: %w", err)
		}
		return cek, nil
	default:
		return nil, fmt.Errorf("JWE: unsupported private key type %T", priv)
	}
}

func open(cek []byte, j *JWE) ([]byte, error) {
	if len(cek) != cekSize {
		return nil, fmt.Errorf("JWE: content key of %d bytes, want %d", len(cek), cekSize)
	}
	iv, errIV := b64.DecodeString(j.IV)
	ct, errCT := b64.DecodeString(j.Ciphertext)
	tag, errTag := b64.DecodeString(j.Tag)
	if err := errors.Join(errIV, errCT, errTag); err != nil {
		return nil, fmt.Errorf("JWE: iv, ciphertext or tag: %w", err)
	}
	aead, err := newGCM(cek)
	if err != nil {
		return nil, err
	}
	if len(iv) != aead.NonceSize() || len(tag) != aead.Overhead() {
		return nil, fmt.Errorf("JWE: IV of %d bytes and tag of %d bytes, want %d and %d", len(iv), len(tag), aead.NonceSize(), aead.Overhead())
	}
	pt, err := aead.Open(nil, iv, append(ct, tag...), []byte(j.Protected))
	if err != nil {
		return nil, fmt.Errorf("JWE: content: %w", err)
	}
	return pt, nil
}
