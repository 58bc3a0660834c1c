package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Trusted is the issuer's key. nil trusts the key embedded in the token's header: that
	// checks integrity only, never who issued it.
	Trusted *ecdsa.PublicKey
	// Now is the time to check iat and exp at; zero means time.Now().
	Now time.Time
	// Leeway tolerates clock skew; 0 means 30 seconds.
	Leeway time.Duration
}

// Verify checks a token's ES256 signature (with trusted, or with the embedded jwk when trusted
// is nil), its profile and its validity period, and returns its claims.
func Verify(token string, trusted *ecdsa.PublicKey) (*EAR, error) {
	return VerifyWithOptions(token, VerifyOptions{Trusted: trusted})
}

// VerifyWithOptions is Verify with options.
func VerifyWithOptions(token string, opts VerifyOptions) (*EAR, error) {
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("token: %d signatures, want 1", len(jws.Signatures))
	}
	key := opts.Trusted
	if key == nil {
		if key, err = embeddedKey(jws.Signatures[0].Protected); err != nil {
			return nil, err
		}
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("token: signature: %w", err)
	}
	ear := &EAR{}
	if err := json.Unmarshal(payload, ear); err != nil {
		return nil, fmt.Errorf("token: claims: %w", err)
	}
	if err := json.Unmarshal(payload, &ear.Raw); err != nil {
		return nil, fmt.Errorf("token: claims: %w", err)
	}
	if err := checkClaims(ear, opts); err != nil {
		return nil, err
	}
	return ear, nil
}

func embeddedKey(h jose.Header) (*ecdsa.PublicKey, error) {
	if h.JSONWebKey == nil {
		return nil, errors.New("token: no jwk in the protected header and no trusted key given")
	}
	k, ok := h.JSONWebKey.Key.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("token: the embedded jwk is %T, want an ECDSA P-256 public key", h.JSONWebKey.Key)
	}
	return k, nil
}

func checkClaims(ear *EAR, opts VerifyOptions) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	leeway := opts.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	}
	var errs []error
	if ear.Profile != Profile {
		errs = append(errs, fmt.Errorf("eat_profile is %q, want %q", ear.Profile, Profile))
	}
	if exp := time.Unix(ear.ExpiresAt, 0); now.After(exp.Add(leeway)) {
		errs = append(errs, fmt.Errorf("expired at %s", exp.UTC().Format(time.RFC3339)))
	}
	if iat := time.Unix(ear.IssuedAt, 0); iat.After(now.Add(leeway)) {
		errs = append(errs, fmt.Errorf("issued in the future (%s)", iat.UTC().Format(time.RFC3339)))
	}
	if ear.CPU0() == nil || ear.CPU0().Status == "" {
		errs = append(errs, errors.New("no cpu0 submodule with an ear.status"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	return nil
}
