// Package token issues and verifies the attestation result a KBS hands out: an EAR (EAT
// Attestation Result) JWT signed with ES256, its verifying key embedded as "jwk" in the header,
// as Trustee's attestation service makes it. The kbs-client reads it (trusting the embedded
// key: it only shows what it was given) and the KBS accepts it back as a bearer token (trusting
// only its own key).
package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Profile is the EAR profile the tokens carry in eat_profile.
const Profile = "tag:github.com,2023:veraison/ear"

// DefaultTTL is a token's lifetime unless configured.
const DefaultTTL = 5 * time.Minute

// Submod is one EAR submodule (the attested TEE is "cpu0").
type Submod struct {
	Status                string         `json:"ear.status"`
	TrustworthinessVector map[string]int `json:"ear.trustworthiness-vector,omitempty"`
	AppraisalPolicyID     string         `json:"ear.appraisal-policy-id,omitempty"`
	// AnnotatedEvidence holds the verified claims, "report_data", "init_data",
	// "runtime_data_claims" (the attest request's nonce and tee-pubkey) and, when the request
	// carried initdata, "init_data_claims".
	AnnotatedEvidence map[string]any `json:"ear.veraison.annotated-evidence,omitempty"`
}

// VerifierID says who issued the result.
type VerifierID struct {
	Developer string `json:"developer"`
	Build     string `json:"build"`
}

// DefaultVerifierID is Veil's.
var DefaultVerifierID = VerifierID{Developer: "https://github.com/veil-runtime/veil", Build: "veil-kbs"}

// EAR is a token's claims set.
type EAR struct {
	Profile    string            `json:"eat_profile"`
	IssuedAt   int64             `json:"iat"`
	ExpiresAt  int64             `json:"exp"`
	VerifierID VerifierID        `json:"ear.verifier-id"`
	Submods    map[string]Submod `json:"submods"`
	// Raw is the whole claims set as decoded JSON (set by Verify).
	Raw map[string]any `json:"-"`
}

// CPU0 returns the "cpu0" submodule, or nil.
func (e *EAR) CPU0() *Submod {
	if s, ok := e.Submods["cpu0"]; ok {
		return &s
	}
	return nil
}

// TEEPubKey returns the tee-pubkey JWK of the cpu0 submodule's runtime data: the key a KBS
// encrypts resources to when the token comes back as a bearer token.
func (e *EAR) TEEPubKey() (json.RawMessage, error) {
	s := e.CPU0()
	if s == nil {
		return nil, errors.New("token: no cpu0 submodule")
	}
	rt, ok := s.AnnotatedEvidence["runtime_data_claims"].(map[string]any)
	if !ok || rt["tee-pubkey"] == nil {
		return nil, errors.New("token: no runtime_data_claims.tee-pubkey in the annotated evidence")
	}
	return json.Marshal(rt["tee-pubkey"])
}

// IssuerOptions configure an Issuer; zero values mean the defaults.
type IssuerOptions struct {
	// TTL is how long tokens are valid; 0 means DefaultTTL.
	TTL time.Duration
	// VerifierID goes into ear.verifier-id; zero means DefaultVerifierID.
	VerifierID VerifierID
	// Now returns the issue time; nil means time.Now.
	Now func() time.Time
}

// Issuer signs tokens with an ECDSA P-256 key.
type Issuer struct {
	key    *ecdsa.PrivateKey
	signer jose.Signer
	opts   IssuerOptions
}

// NewIssuer returns an issuer signing with key (P-256).
func NewIssuer(key *ecdsa.PrivateKey, opts IssuerOptions) (*Issuer, error) {
	if key == nil || key.Curve != elliptic.P256() {
		return nil, errors.New("token: the issuer key must be ECDSA P-256 (ES256)")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.VerifierID == (VerifierID{}) {
		opts.VerifierID = DefaultVerifierID
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Issuer{key: key, signer: signer, opts: opts}, nil
}

// GenerateIssuer returns an issuer with a new key.
func GenerateIssuer(opts IssuerOptions) (*Issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("token: generate key: %w", err)
	}
	return NewIssuer(key, opts)
}

// LoadIssuerPEM returns an issuer with a PEM key: "PRIVATE KEY" (PKCS#8) or "EC PRIVATE KEY".
func LoadIssuerPEM(data []byte, opts IssuerOptions) (*Issuer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("token: no PEM block in the issuer key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("token: issuer key PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("token: issuer key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("token: issuer key is %T, want ECDSA P-256", key)
	}
	return NewIssuer(ec, opts)
}

// PrivateKeyPEM returns the key as a PKCS#8 "PRIVATE KEY" PEM block, to save it.
func (i *Issuer) PrivateKeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(i.key)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PublicKey returns the key that verifies the issuer's tokens.
func (i *Issuer) PublicKey() *ecdsa.PublicKey { return &i.key.PublicKey }

// Issue returns a signed token with cpu0 as its only submodule.
func (i *Issuer) Issue(cpu0 Submod) (string, error) {
	if cpu0.Status == "" {
		return "", errors.New("token: the submodule has no status")
	}
	now := i.opts.Now()
	ear := EAR{
		Profile: Profile, IssuedAt: now.Unix(), ExpiresAt: now.Add(i.opts.TTL).Unix(),
		VerifierID: i.opts.VerifierID, Submods: map[string]Submod{"cpu0": cpu0},
	}
	payload, err := json.Marshal(ear)
	if err != nil {
		return "", fmt.Errorf("token: claims: %w", err)
	}
	jws, err := i.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return jws.CompactSerialize()
}
