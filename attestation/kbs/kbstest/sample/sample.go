// Package sample is the fake "sample" TEE of the KBS's tests: an attestation service that
// issues real ES256 EAR-shaped tokens for sample evidence, and a sample attester. It is for
// tests only: the "sample" TEE proves nothing. It is apart from kbstest so that a test binary
// can use it without linking the Rego engine and the real verifiers (the KBS's fuzz targets,
// attestation/kbs/kbsfuzz: the fuzzing engine scans every instrumented package's coverage
// counters on each execution). kbstest re-exports it.
package sample

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/veil-runtime/veil/attestation/binding"
	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/initdata"
)

// TEE is the name of the fake TEE.
const TEE = "sample"

// SampleEvidence is the evidence shape of the sample TEE (PROTOCOLS.md).
type SampleEvidence struct {
	SVN        string `json:"svn"`
	ReportData string `json:"report_data"` // std base64 of the 64 bytes
}

// Attestation is a fake kbs.AttestationService and kbs.TokenVerifier: it accepts sample
// evidence whose report_data equals the one the KBS recomputed, and issues tokens signed
// with its own P-256 key.
type Attestation struct {
	key *ecdsa.PrivateKey
	// TTL is the lifetime of the tokens (default 5 minutes).
	TTL time.Duration
	// Now is the clock of token issue and checks (default time.Now).
	Now func() time.Time

	mu     sync.Mutex
	status string
	last   *kbs.Evidence
	policy map[string][]byte
}

var (
	_ kbs.AttestationService      = (*Attestation)(nil)
	_ kbs.TokenVerifier           = (*Attestation)(nil)
	_ kbs.AttestationPolicySetter = (*Attestation)(nil)
)

// NewAttestation returns a service that appraises every good sample evidence as "affirming".
func NewAttestation() *Attestation {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return &Attestation{key: key, TTL: 5 * time.Minute, Now: time.Now, status: "affirming", policy: map[string][]byte{}}
}

// Last returns the evidence of the last Attest call.
func (a *Attestation) Last() *kbs.Evidence {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Policy returns the attestation policy last set under id.
func (a *Attestation) Policy(id string) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.policy[id]
}

// Supports implements kbs.AttestationService.
func (a *Attestation) Supports(tee string) bool { return tee == TEE }

// Attest implements kbs.AttestationService.
func (a *Attestation) Attest(_ context.Context, ev *kbs.Evidence) (*kbs.Attested, error) {
	a.mu.Lock()
	a.last = ev
	status := a.status
	a.mu.Unlock()
	if ev.TEE != TEE {
		return nil, fmt.Errorf("TEE %q not supported", ev.TEE)
	}
	var se SampleEvidence
	if err := json.Unmarshal(ev.Evidence, &se); err != nil {
		return nil, fmt.Errorf("sample evidence: %w", err)
	}
	rd, err := base64.StdEncoding.DecodeString(se.ReportData)
	if err != nil {
		return nil, fmt.Errorf("sample evidence report_data: %w", err)
	}
	if subtle.ConstantTimeCompare(rd, ev.ReportData[:]) != 1 {
		return nil, errors.New("report_data does not bind the nonce and tee-pubkey")
	}
	var initDigest []byte
	if ev.InitData != nil {
		doc, err := initdata.ParseFormat(ev.InitData.Format, []byte(ev.InitData.Body))
		if err != nil {
			return nil, fmt.Errorf("init-data: %w", err)
		}
		initDigest = doc.Digest()
	}
	claims := a.claims(ev, se, status, initDigest)
	tok, err := a.sign(claims)
	if err != nil {
		return nil, err
	}
	// The claims as a verifier would see them: through JSON.
	out, err := a.VerifyToken(context.Background(), tok)
	if err != nil {
		return nil, err
	}
	return &kbs.Attested{Token: tok, Claims: out}, nil
}

func (a *Attestation) claims(ev *kbs.Evidence, se SampleEvidence, status string, initDigest []byte) map[string]any {
	annotated := map[string]any{
		"sample":      map[string]any{"svn": se.SVN},
		"report_data": hex.EncodeToString(ev.ReportData[:]),
		"runtime_data_claims": map[string]any{
			"nonce": ev.Nonce, "tee-pubkey": json.RawMessage(ev.TEEPubKey),
		},
	}
	if initDigest != nil {
		annotated["init_data"] = hex.EncodeToString(initDigest)
	}
	now := a.Now()
	return map[string]any{
		"eat_profile":     "tag:github.com,2023:veraison/ear",
		"iat":             now.Unix(),
		"exp":             now.Add(a.TTL).Unix(),
		"ear.verifier-id": map[string]any{"developer": "veil", "build": "kbstest"},
		"submods": map[string]any{"cpu0": map[string]any{
			"ear.status":                      status,
			"ear.appraisal-policy-id":         "default",
			"ear.veraison.annotated-evidence": annotated,
		}},
	}
}

func (a *Attestation) sign(claims map[string]any) (string, error) {
	jwk := jose.JSONWebKey{Key: a.key.Public(), Algorithm: string(jose.ES256)}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: a.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("jwk", jwk))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return tok, nil
}

// VerifyToken implements kbs.TokenVerifier: the signature must be this service's, and exp in
// the future.
func (a *Attestation) VerifyToken(_ context.Context, token string) (map[string]any, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("parse token: %w", err)
	}
	var std jwt.Claims
	claims := map[string]any{}
	if err := tok.Claims(a.key.Public(), &std, &claims); err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	if err := std.Validate(jwt.Expected{Time: a.Now()}); err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	return claims, nil
}

// SetAttestationPolicy implements kbs.AttestationPolicySetter by remembering the policy.
func (a *Attestation) SetAttestationPolicy(_ context.Context, id string, policy []byte) error {
	if len(policy) == 0 {
		return errors.New("empty policy")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.policy[id] = policy
	return nil
}

// Attester is a sample-TEE attester: its evidence carries the report_data it is given.
type Attester struct {
	// Tamper, when set, changes the report_data before it is put in the evidence.
	Tamper func(rd [64]byte) [64]byte
}

// TEE returns "sample".
func (*Attester) TEE() string { return TEE }

// Evidence returns sample evidence carrying reportData.
func (a *Attester) Evidence(_ context.Context, reportData [binding.ReportDataSize]byte) (json.RawMessage, error) {
	if a.Tamper != nil {
		reportData = a.Tamper(reportData)
	}
	return json.Marshal(SampleEvidence{SVN: "1", ReportData: base64.StdEncoding.EncodeToString(reportData[:])})
}
