// Package builtin is the KBS's built-in attestation service: it verifies evidence with
// attestation/verifier, appraises the claims with attestation/appraisal and issues an EAR token
// with attestation/token, as Trustee's built-in CoCo attestation service does. It implements
// kbs.AttestationService, kbs.TokenVerifier and kbs.AttestationPolicySetter.
package builtin

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/token"
	"github.com/veil-runtime/veil/attestation/verifier"
	"github.com/veil-runtime/veil/initdata"
)

// Options configure a Service. Verifier, Issuer and Appraiser are required.
type Options struct {
	Verifier  verifier.Verifier
	Appraiser *appraisal.Appraiser
	Issuer    *token.Issuer
	// Reference are the reference values, kept to rebuild the appraiser when the
	// administrator replaces the policy.
	Reference *appraisal.ReferenceValues
	// PolicyFile, when set, receives a policy set by the administrator, so that it survives a
	// restart.
	PolicyFile string
}

// Service is the built-in attestation service. It is safe for concurrent use.
type Service struct {
	opts Options

	mu        sync.RWMutex
	appraiser *appraisal.Appraiser
}

var (
	_ kbs.AttestationService      = (*Service)(nil)
	_ kbs.TokenVerifier           = (*Service)(nil)
	_ kbs.AttestationPolicySetter = (*Service)(nil)
)

// New returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Verifier == nil || opts.Appraiser == nil || opts.Issuer == nil {
		return nil, errors.New("attestation service: a verifier, an appraiser and a token issuer are required")
	}
	return &Service{opts: opts, appraiser: opts.Appraiser}, nil
}

// Supports reports whether tee is "snp" or "tdx" (simulated evidence uses these formats too).
func (s *Service) Supports(tee string) bool {
	return tee == evidence.TEESNP || tee == evidence.TEETDX
}

// Attest verifies, appraises and issues a token whatever the appraisal's status: the resource
// policy decides what the status is worth. Verification failures (signature, chain, report
// data, initdata) are errors.
func (s *Service) Attest(ctx context.Context, ev *kbs.Evidence) (*kbs.Attested, error) {
	in := verifier.Input{TEE: ev.TEE, Evidence: ev.Evidence, ReportData: ev.ReportData}
	var initClaims map[string]any
	if ev.InitData != nil {
		doc, err := ReadInitData(ev.InitData)
		if err != nil {
			return nil, err
		}
		in.InitDataDigest = doc.Digest()
		initClaims = doc.Claims()
	}
	claims, err := s.opts.Verifier.Verify(ctx, in)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	ap := s.appraiser
	s.mu.RUnlock()
	res, err := ap.Appraise(ctx, claims)
	if err != nil {
		return nil, err
	}
	annotated := make(map[string]any, len(claims.Raw)+4)
	for k, v := range claims.Raw {
		annotated[k] = v
	}
	annotated["report_data"] = hex.EncodeToString(ev.ReportData[:])
	annotated["runtime_data_claims"] = map[string]any{"nonce": ev.Nonce, "tee-pubkey": json.RawMessage(ev.TEEPubKey)}
	if initClaims != nil {
		annotated["init_data_claims"] = initClaims
	}
	if len(res.Reasons) > 0 {
		annotated["appraisal_reasons"] = res.Reasons
	}
	tok, err := s.opts.Issuer.Issue(token.Submod{
		Status: string(res.Status), TrustworthinessVector: res.TrustworthinessVector,
		AppraisalPolicyID: res.PolicyID, AnnotatedEvidence: annotated,
	})
	if err != nil {
		return nil, err
	}
	out, err := payload(tok)
	if err != nil {
		return nil, err
	}
	return &kbs.Attested{Token: tok, Claims: out}, nil
}

// ReadInitData reads the init-data of an attest request with the rules the agent applies to
// the document it booted with (initdata.ParseFormat): the KBS binds its digest to the
// evidence's HOST_DATA or MRCONFIGID and issues its data table as init_data_claims. A document
// the agent would refuse is refused here too.
func ReadInitData(d *protocol.InitData) (*initdata.Document, error) {
	doc, err := initdata.ParseFormat(d.Format, []byte(d.Body))
	if err != nil {
		return nil, fmt.Errorf("init-data: %w", err)
	}
	return doc, nil
}

// payload decodes the claims of a token this service has just signed.
func payload(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("token: not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("token payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, fmt.Errorf("token payload: %w", err)
	}
	return claims, nil
}

// VerifyToken accepts only tokens signed by this service's issuer key and not expired.
func (s *Service) VerifyToken(_ context.Context, tok string) (map[string]any, error) {
	ear, err := token.Verify(tok, s.opts.Issuer.PublicKey())
	if err != nil {
		return nil, err
	}
	return ear.Raw, nil
}

// SetAttestationPolicy replaces the appraisal policy (only the id "default" exists) and writes
// it to the policy file. A policy that does not compile changes nothing.
func (s *Service) SetAttestationPolicy(ctx context.Context, id string, policy []byte) error {
	if id != "default" {
		return fmt.Errorf("policy id %q: this KBS has one appraisal policy, \"default\"", id)
	}
	ap, err := NewAppraiser(ctx, string(policy), s.opts.Reference)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.PolicyFile != "" {
		if err := writeAtomic(s.opts.PolicyFile, policy); err != nil {
			return err
		}
	}
	s.appraiser = ap
	return nil
}

// NewAppraiser compiles an appraisal policy. The default policy keeps its well-known id;
// another is named by its SHA-256.
func NewAppraiser(ctx context.Context, policy string, ref *appraisal.ReferenceValues) (*appraisal.Appraiser, error) {
	opts := appraisal.Options{Policy: policy, Reference: ref}
	if policy == appraisal.DefaultPolicy {
		opts.PolicyID = appraisal.DefaultPolicyID
	}
	return appraisal.New(ctx, opts)
}

func writeAtomic(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("write attestation policy: %w", err)
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write attestation policy: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write attestation policy: %w", err)
	}
	return nil
}
