// Package kbs is Veil's Key Broker Service: the relying party's side of the KBS protocol 0.4.0
// (Request, Challenge, Attestation, Response), compatible with the Confidential Containers
// Trustee KBS. A guest authenticates (POST /kbs/v0/auth), proves what it is with TEE evidence
// bound to the session nonce and its ephemeral key (POST /kbs/v0/attest) and fetches resources
// (GET /kbs/v0/resource/<repository>/<type>/<tag>) sealed in a JWE to that key, when the
// resource policy grants them. An administrator, authenticated by an Ed25519-signed JWT,
// stores resources and policies.
//
// The package does not verify evidence itself: it hands the evidence and the report_data that
// it recomputed from the nonce and key to an AttestationService, and trusts the token that
// comes back. See docs/kbs.md.
package kbs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/veil-runtime/veil/attestation/binding"
	"github.com/veil-runtime/veil/attestation/kbs/store"
	"github.com/veil-runtime/veil/attestation/kbswire/admin"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// Evidence is what the KBS asks an AttestationService to verify for one attest request.
type Evidence struct {
	// TEE is the TEE named in the auth request ("snp", "tdx", ...).
	TEE string
	// Evidence is tee-evidence.primary_evidence as the client sent it.
	Evidence json.RawMessage
	// ReportData is the value the evidence must carry: binding.ReportData of Nonce and
	// TEEPubKey, recomputed by the KBS.
	ReportData [binding.ReportDataSize]byte
	// InitData is the initdata document the client sent, or nil.
	InitData *protocol.InitData
	// Nonce is the session's challenge nonce.
	Nonce string
	// TEEPubKey is runtime-data.tee-pubkey as sent; the token must carry it.
	TEEPubKey json.RawMessage
}

// Attested is the outcome of a successful attestation.
type Attested struct {
	// Token is the attestation token (an EAR JWT) returned to the client.
	Token string
	// Claims are the token's claims, the input of the resource policy.
	Claims map[string]any
}

// AttestationService verifies evidence, appraises it and issues a token.
type AttestationService interface {
	// Supports reports whether evidence of this TEE can be verified.
	Supports(tee string) bool
	// Attest verifies the evidence. Every error is reported to the client as an
	// AttestationError with the error's text as detail.
	Attest(ctx context.Context, ev *Evidence) (*Attested, error)
}

// TokenVerifier checks a bearer token that this KBS (or its attestation service) issued.
type TokenVerifier interface {
	// VerifyToken checks the token's signature and validity period and returns its claims.
	VerifyToken(ctx context.Context, token string) (map[string]any, error)
}

// AttestationPolicySetter is implemented by attestation services whose appraisal policy the
// administrator can replace (POST /kbs/v0/attestation-policy).
type AttestationPolicySetter interface {
	SetAttestationPolicy(ctx context.Context, id string, policy []byte) error
}

// ResourcePolicy decides which token claims may read which resource.
type ResourcePolicy interface {
	Allow(ctx context.Context, claims map[string]any, p protocol.ResourcePath) (bool, error)
	// Set replaces the policy (POST /kbs/v0/resource-policy).
	Set(ctx context.Context, src []byte) error
	// Source returns the policy text (GET /kbs/v0/resource-policy).
	Source() []byte
	// Bind replaces the initdata digests bound to a repository (POST
	// /kbs/v0/repository-binding/<repository>); Binding returns them.
	Bind(repository string, digests []string) error
	Binding(repository string) []string
}

// Defaults of Options.
const (
	DefaultSessionTTL       = 5 * time.Minute
	DefaultMaxSpentNonces   = 1_000_000
	DefaultAuthRate         = 10
	DefaultAuthBurst        = 50
	DefaultMaxClients       = 10_000
	DefaultMaxBodyBytes     = 1 << 20
	DefaultMaxResourceBytes = 2 << 20
)

// Options configures a Server. Attestation, Tokens, Resources and Policy are required.
type Options struct {
	Attestation AttestationService
	Tokens      TokenVerifier
	Resources   store.Store
	Policy      ResourcePolicy
	// Admin authenticates administrators; nil refuses every administrative request.
	Admin *admin.Verifier
	// SessionTTL is how long a challenge cookie lives after auth (default 5 minutes).
	SessionTTL time.Duration
	// SessionKeys seal the challenge cookies: the first seals, both open (the previous key,
	// during a rotation). Each is SessionKeySize bytes. Nil: a random key made at start and
	// rotated every SessionTTL, the previous one accepted for one more lifetime.
	SessionKeys [][]byte
	// MaxSpentNonces bounds the record of spent challenge nonces, kept until each challenge
	// expires; attestations are refused (503, Retry-After) while it is full of live ones
	// (default 1,000,000, about DefaultMaxSpentNonces/SessionTTL handshakes per second).
	MaxSpentNonces int
	// AuthRate and AuthBurst are the token bucket of each client (source address) on auth
	// and, separately, on attest: requests per second and burst (defaults 10 and 50). A
	// negative AuthRate turns the limits off.
	AuthRate  float64
	AuthBurst int
	// MaxClients bounds the clients tracked by each limiter (default 10,000); beyond it,
	// new clients share one bucket (docs/kbs.md).
	MaxClients int
	// MaxBodyBytes bounds the body of auth, attest and policy requests (default 1 MiB).
	MaxBodyBytes int64
	// MaxResourceBytes bounds a resource stored by the administrator (default 2 MiB).
	MaxResourceBytes int64
	// Registry receives the server's metrics; nil makes a private one. Either way the
	// server serves it on GET /metrics.
	Registry *prometheus.Registry
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Server is the KBS as an http.Handler.
type Server struct {
	opts     Options
	keys     *keyring
	spent    *spentNonces
	authLim  *clientLimits // nil: no per-client limits
	attLim   *clientLimits
	metrics  *metrics
	metricsH http.Handler
}

var _ http.Handler = (*Server)(nil)

// New checks the options and returns a Server.
func New(opts Options) (*Server, error) {
	var errs []error
	if opts.Attestation == nil {
		errs = append(errs, errors.New("no attestation service"))
	}
	if opts.Tokens == nil {
		errs = append(errs, errors.New("no token verifier"))
	}
	if opts.Resources == nil {
		errs = append(errs, errors.New("no resource store"))
	}
	if opts.Policy == nil {
		errs = append(errs, errors.New("no resource policy"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(errors.New("KBS options"), err)
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.MaxSpentNonces <= 0 {
		opts.MaxSpentNonces = DefaultMaxSpentNonces
	}
	if opts.AuthRate == 0 {
		opts.AuthRate = DefaultAuthRate
	}
	if opts.AuthBurst <= 0 {
		opts.AuthBurst = DefaultAuthBurst
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxResourceBytes <= 0 {
		opts.MaxResourceBytes = DefaultMaxResourceBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Admin == nil {
		opts.Admin = admin.NewVerifier()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	s := &Server{opts: opts, spent: newSpentNonces(opts.MaxSpentNonces)}
	var err error
	if opts.SessionKeys == nil {
		s.keys, err = newGeneratedKeyring(opts.SessionTTL, opts.Now)
	} else {
		s.keys, err = newFixedKeyring(opts.SessionKeys)
	}
	if err != nil {
		return nil, err
	}
	if opts.AuthRate > 0 {
		s.authLim = newClientLimits(opts.AuthRate, opts.AuthBurst, opts.MaxClients)
		s.attLim = newClientLimits(opts.AuthRate, opts.AuthBurst, opts.MaxClients)
	}
	m, h, err := newMetrics(opts.Registry, s)
	if err != nil {
		return nil, err
	}
	s.metrics, s.metricsH = m, h
	return s, nil
}
