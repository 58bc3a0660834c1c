// Package jwe seals KBS resources to a TEE's ephemeral key and opens them again: the flattened
// JSON JWE of the KBS protocol 0.4.0 with ECDH-ES+A256KW on P-256 or RSA-OAEP-256 key
// management and A256GCM content encryption, and the JWK form of those keys. The protected
// header is written byte for byte as the reference implementation writes it, because the
// reference client re-serialises it to compute the AEAD additional data.
package jwe

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// The algorithm names used in JWKs and headers.
const (
	AlgECDHESA256KW = "ECDH-ES+A256KW"
	AlgRSAOAEP256   = "RSA-OAEP-256"
	EncA256GCM      = "A256GCM"
	CurveP256       = "P-256"
)

// minRSABits is the smallest RSA modulus accepted as a tee-pubkey.
const minRSABits = 2048

var b64 = base64.RawURLEncoding

// JWK is a public key as the attest request carries it in runtime-data.tee-pubkey.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	Alg string `json:"alg"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// PublicJWK returns the JWK of an EC P-256 or RSA public key, with the alg the KBS uses for it.
func PublicJWK(pub crypto.PublicKey) (json.RawMessage, error) {
	var k JWK
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		ek, err := pub.ECDH()
		if err != nil || ek.Curve() != ecdh.P256() {
			return nil, errors.New("JWK: only EC keys on P-256 are supported")
		}
		x, y := splitPoint(ek.Bytes())
		k = JWK{Kty: "EC", Crv: CurveP256, Alg: AlgECDHESA256KW, X: b64.EncodeToString(x), Y: b64.EncodeToString(y)}
	case *ecdh.PublicKey:
		if pub.Curve() != ecdh.P256() {
			return nil, errors.New("JWK: only EC keys on P-256 are supported")
		}
		x, y := splitPoint(pub.Bytes())
		k = JWK{Kty: "EC", Crv: CurveP256, Alg: AlgECDHESA256KW, X: b64.EncodeToString(x), Y: b64.EncodeToString(y)}
	case *rsa.PublicKey:
		e := big.NewInt(int64(pub.E)).Bytes()
		k = JWK{Kty: "RSA", Alg: AlgRSAOAEP256, N: b64.EncodeToString(pub.N.Bytes()), E: b64.EncodeToString(e)}
	default:
		return nil, fmt.Errorf("JWK: unsupported key type %T", pub)
	}
	out, err := json.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("JWK: %w", err)
	}
	return out, nil
}

// splitPoint splits an uncompressed P-256 point (0x04 || X || Y) into X and Y.
func splitPoint(p []byte) (x, y []byte) {
	return p[1:33], p[33:65]
}

// ParsePublicJWK parses a tee-pubkey: an EC P-256 key with alg ECDH-ES+A256KW (returned as
// *ecdh.PublicKey) or an RSA key of at least 2048 bits with alg RSA-OAEP-256 (*rsa.PublicKey).
func ParsePublicJWK(data []byte) (crypto.PublicKey, error) {
	var k JWK
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("tee-pubkey: %w", err)
	}
	switch k.Kty {
	case "EC":
		return parseEC(k)
	case "RSA":
		return parseRSA(k)
	default:
		return nil, fmt.Errorf("tee-pubkey: key type %q not supported (want EC or RSA)", k.Kty)
	}
}

func parseEC(k JWK) (*ecdh.PublicKey, error) {
	if k.Crv != CurveP256 || k.Alg != AlgECDHESA256KW {
		return nil, fmt.Errorf("tee-pubkey: EC curve %q with alg %q not supported (want %s, %s)", k.Crv, k.Alg, CurveP256, AlgECDHESA256KW)
	}
	x, errX := b64.DecodeString(k.X)
	y, errY := b64.DecodeString(k.Y)
	if err := errors.Join(errX, errY); err != nil {
		return nil, fmt.Errorf("tee-pubkey: EC coordinates: %w", err)
	}
	if len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("tee-pubkey: EC coordinates of %d and %d bytes, want 32", len(x), len(y))
	}
	point := append(append([]byte{4}, x...), y...)
	pub, err := ecdh.P256().NewPublicKey(point)
	if err != nil {
		return nil, fmt.Errorf("tee-pubkey: EC point: %w", err)
	}
	return pub, nil
}

func parseRSA(k JWK) (*rsa.PublicKey, error) {
	if k.Alg != AlgRSAOAEP256 {
		return nil, fmt.Errorf("tee-pubkey: RSA alg %q not supported (want %s)", k.Alg, AlgRSAOAEP256)
	}
	n, errN := b64.DecodeString(k.N)
	e, errE := b64.DecodeString(k.E)
	if err := errors.Join(errN, errE); err != nil {
		return nil, fmt.Errorf("tee-pubkey: RSA modulus or exponent: %w", err)
	}
	if len(e) == 0 || len(e) > 4 {
		return nil, fmt.Errorf("tee-pubkey: RSA exponent of %d bytes", len(e))
	}
	exp := new(big.Int).SetBytes(e)
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}
	if pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
		return nil, fmt.Errorf("tee-pubkey: RSA key of %d bits with exponent %d refused (want at least %d bits, odd exponent)", pub.N.BitLen(), pub.E, minRSABits)
	}
	return pub, nil
}
