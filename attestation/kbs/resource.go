package kbs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbs/store"
	"github.com/veil-runtime/veil/attestation/kbswire/jwe"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// resourcePath parses the path of a resource request.
func resourcePath(r *http.Request) (protocol.ResourcePath, error) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), protocol.PathPrefix+"/resource/")
	p, err := protocol.ParseResourcePath(rest)
	if err != nil {
		return p, refuse(protocol.InvalidRequestPath, reasonPath, err, "request path is invalid")
	}
	return p, nil
}

// handleGetResource releases a resource, sealed to the TEE's key, to an attested client whose
// claims the resource policy grants it.
func (s *Server) handleGetResource(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	p, err := resourcePath(r)
	if err != nil {
		return err
	}
	grant, err := s.grant(ctx, r)
	if err != nil {
		return err
	}
	ok, err := s.opts.Policy.Allow(ctx, grant.claims, p)
	if err != nil {
		return refuse(protocol.PolicyDeny, reasonPolicy, err, "resource policy")
	}
	if !ok {
		return refuse(protocol.PolicyDeny, reasonPolicy, nil, "access to %s denied by the resource policy", p)
	}
	data, err := s.opts.Resources.Get(ctx, p)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(protocol.InvalidRequestPath, reasonNotFound, nil, "resource %s not found", p)
	}
	if err != nil {
		return refuse(protocol.PluginInternalError, reasonInternal, err, "read resource %s", p)
	}
	sealed, err := jwe.Encrypt(grant.pubKey, data)
	clear(data)
	if err != nil {
		return refuse(protocol.JweError, reasonJWE, err, "seal resource %s", p)
	}
	s.metrics.released.Inc()
	log.G(ctx).WithField("resource", p.String()).Info("kbs: resource released")
	return writeJSON(w, sealed)
}

// grant finds the client's token: the session cookie of an attested session (which is the
// token itself) or the bearer token. A cookie that is still a challenge is not a grant.
func (s *Server) grant(ctx context.Context, r *http.Request) (*sessionGrant, error) {
	var tokens []string
	if c, err := r.Cookie(protocol.SessionCookie); err == nil && strings.Count(c.Value, ".") == 2 {
		tokens = append(tokens, c.Value)
	}
	if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && raw != "" {
		tokens = append(tokens, raw)
	}
	if len(tokens) == 0 {
		return nil, refuse(protocol.TokenNotFound, reasonNoToken, nil,
			"no attested session cookie and no bearer token: attest first")
	}
	var err error
	for _, raw := range tokens {
		var g *sessionGrant
		if g, err = s.tokenGrant(ctx, raw); err == nil {
			return g, nil
		}
	}
	return nil, err
}

// tokenGrant verifies a token and finds the tee-pubkey that it carries.
func (s *Server) tokenGrant(ctx context.Context, raw string) (*sessionGrant, error) {
	claims, err := s.opts.Tokens.VerifyToken(ctx, raw)
	if err != nil {
		return nil, refuse(protocol.TokenVerifierError, reasonToken, err, "attestation token")
	}
	rawKey, err := TEEPubKey(claims)
	if err != nil {
		return nil, refuse(protocol.TokenVerifierError, reasonToken, err, "attestation token")
	}
	pub, err := jwe.ParsePublicJWK(rawKey)
	if err != nil {
		return nil, refuse(protocol.TokenVerifierError, reasonToken, err, "attestation token")
	}
	return &sessionGrant{token: raw, claims: claims, pubKey: pub, rawPubKey: rawKey}, nil
}

// TEEPubKey returns the tee-pubkey that an EAR token carries, in
// submods.<name>["ear.veraison.annotated-evidence"].runtime_data_claims["tee-pubkey"]
// (submodule cpu0 first, then the others by name).
func TEEPubKey(claims map[string]any) (json.RawMessage, error) {
	submods, _ := claims["submods"].(map[string]any)
	names := make([]string, 0, len(submods))
	for name := range submods {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "cpu0":
			return -1
		case b == "cpu0":
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, name := range names {
		sub, _ := submods[name].(map[string]any)
		ev, _ := sub["ear.veraison.annotated-evidence"].(map[string]any)
		rd, _ := ev["runtime_data_claims"].(map[string]any)
		if key, ok := rd["tee-pubkey"]; ok {
			raw, err := json.Marshal(key)
			if err != nil {
				return nil, fmt.Errorf("tee-pubkey claim: %w", err)
			}
			return raw, nil
		}
	}
	return nil, errors.New("the token carries no tee-pubkey claim")
}

// handlePutResource stores a resource (administrator only). The body is the resource's bytes.
// With "If-None-Match: *" it only creates: an existing resource is left as it was and the
// request is refused with 412 (veil-keyprovider generates image keys this way, so a second
// machine cannot replace a key that images already depend on).
func (s *Server) handlePutResource(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if err := s.opts.Admin.Authorize(r); err != nil {
		return refuse(protocol.AdminAuthAccess, reasonAdmin, err, "set resource")
	}
	p, err := resourcePath(r)
	if err != nil {
		return err
	}
	data, err := readBody(w, r, s.opts.MaxResourceBytes)
	if err != nil {
		return refuse(protocol.PluginInternalError, reasonTooLarge, err, "set resource %s", p)
	}
	createOnly := r.Header.Get("If-None-Match") == "*"
	if createOnly {
		err = s.opts.Resources.Create(ctx, p, data)
	} else {
		err = s.opts.Resources.Put(ctx, p, data)
	}
	clear(data)
	if errors.Is(err, store.ErrExists) {
		return refuse(protocol.PluginInternalError, reasonExists, err, "create resource %s", p)
	}
	if err != nil {
		return refuse(protocol.PluginInternalError, reasonInternal, err, "set resource %s", p)
	}
	log.G(ctx).WithField("resource", p.String()).Info("kbs: resource stored by the administrator")
	return nil
}

// setPolicyRequest is the body of the policy endpoints; policy is base64url without padding
// (standard base64 is accepted too).
type setPolicyRequest struct {
	Type     string `json:"type,omitempty"`
	PolicyID string `json:"policy_id,omitempty"`
	Policy   string `json:"policy"`
}

func (s *Server) readPolicy(w http.ResponseWriter, r *http.Request) (*setPolicyRequest, []byte, error) {
	if err := s.opts.Admin.Authorize(r); err != nil {
		return nil, nil, refuse(protocol.AdminAuthAccess, reasonAdmin, err, "set policy")
	}
	body, err := readBody(w, r, s.opts.MaxBodyBytes)
	if err != nil {
		return nil, nil, refuse(protocol.PluginInternalError, reasonTooLarge, err, "set policy")
	}
	var req setPolicyRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, refuse(protocol.SerdeError, reasonBadRequest, err, "set policy request")
	}
	src, err := decodePolicy(req.Policy)
	if err != nil {
		return nil, nil, refuse(protocol.SerdeError, reasonBadRequest, err, "set policy request")
	}
	return &req, src, nil
}

func decodePolicy(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("policy is not base64")
}

func (s *Server) handleSetResourcePolicy(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	_, src, err := s.readPolicy(w, r)
	if err != nil {
		return err
	}
	if err := s.opts.Policy.Set(ctx, src); err != nil {
		return refuse(protocol.PluginInternalError, reasonBadRequest, err, "set resource policy")
	}
	log.G(ctx).Info("kbs: resource policy replaced by the administrator")
	return nil
}

func (s *Server) handleGetResourcePolicy(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if err := s.opts.Admin.Authorize(r); err != nil {
		return refuse(protocol.AdminAuthAccess, reasonAdmin, err, "get resource policy")
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(base64.RawURLEncoding.EncodeToString(s.opts.Policy.Source())))
	return nil
}

func (s *Server) handleSetAttestationPolicy(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	req, src, err := s.readPolicy(w, r)
	if err != nil {
		return err
	}
	setter, ok := s.opts.Attestation.(AttestationPolicySetter)
	if !ok {
		return refuse(protocol.PluginInternalError, reasonUnimplemented, nil, "this attestation service has no settable policy")
	}
	if req.Type != "" && req.Type != "rego" {
		return refuse(protocol.PluginInternalError, reasonBadRequest, nil, "policy type %q is not supported (want rego)", req.Type)
	}
	id := req.PolicyID
	if id == "" {
		id = "default"
	}
	if err := setter.SetAttestationPolicy(ctx, id, src); err != nil {
		return refuse(protocol.PluginInternalError, reasonBadRequest, err, "set attestation policy %q", id)
	}
	log.G(ctx).WithField("policy_id", id).Info("kbs: attestation policy replaced by the administrator")
	return nil
}
