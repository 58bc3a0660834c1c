package kbs

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/binding"
	"github.com/veil-runtime/veil/attestation/kbswire/jwe"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// handleAuth answers POST /kbs/v0/auth with a challenge, sealed into the session cookie: the
// server keeps nothing.
func (s *Server) handleAuth(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if err := s.limit(s.authLim, r); err != nil {
		return err
	}
	body, err := readBody(w, r, s.opts.MaxBodyBytes)
	if err != nil {
		return refuse(protocol.AttestationError, reasonTooLarge, err, "auth request")
	}
	var req protocol.Request
	if err := json.Unmarshal(body, &req); err != nil {
		return refuse(protocol.AttestationError, reasonBadRequest, err, "auth request is not a KBS Request")
	}
	if req.Version != protocol.Version {
		return refuse(protocol.AttestationError, reasonVersion, nil,
			"KBS protocol version mismatch: this KBS speaks %s, the request is %q", protocol.Version, req.Version)
	}
	if !s.opts.Attestation.Supports(req.TEE) {
		return refuse(protocol.AttestationError, reasonUnknownTEE, nil, "TEE %q is not supported by this KBS", req.TEE)
	}
	ch := &challenge{expires: s.opts.Now().Add(s.opts.SessionTTL), tee: req.TEE, version: req.Version}
	if _, err := rand.Read(ch.nonce[:]); err != nil {
		return refuse(protocol.AttestationError, reasonInternal, err, "make nonce")
	}
	value, err := s.sealChallenge(ch)
	if err != nil {
		return refuse(protocol.AttestationError, reasonInternal, err, "seal session cookie")
	}
	log.G(ctx).WithField("tee", req.TEE).Debug("kbs: challenge sent")
	setSessionCookie(w, value, ch.expires)
	return writeJSON(w, protocol.Challenge{Nonce: ch.nonceString(), ExtraParams: json.RawMessage(`""`)})
}

// limit takes a token from the client's bucket of lim (nil: no limit).
func (s *Server) limit(lim *clientLimits, r *http.Request) error {
	if lim == nil {
		return nil
	}
	if ok, wait := lim.allow(clientKey(r), s.opts.Now()); !ok {
		e := refuse(protocol.AttestationError, reasonRateLimited, nil,
			"too many requests from this address: retry in %s", wait.Round(time.Millisecond))
		e.RetryAfter = wait
		return e
	}
	return nil
}

func setSessionCookie(w http.ResponseWriter, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: protocol.SessionCookie, Value: value, Expires: expires})
}

func writeJSON(w http.ResponseWriter, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode reply: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	return nil
}

// handleAttest verifies the evidence bound to the cookie's challenge and answers with the
// token, which becomes the session cookie. The challenge's nonce is spent on success.
func (s *Server) handleAttest(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if err := s.limit(s.attLim, r); err != nil {
		return err
	}
	cookie, err := r.Cookie(protocol.SessionCookie)
	if err != nil {
		return refuse(protocol.AttestationError, reasonNoSession, nil, "no %s cookie: call auth first", protocol.SessionCookie)
	}
	ch, err := s.openChallenge(cookie.Value)
	if err != nil {
		return refuse(protocol.AttestationError, sessionReason(err), err, "attest")
	}
	if s.spent.has(ch) {
		return refuse(protocol.AttestationError, reasonSpent, errSessionSpent, "attest")
	}
	body, err := readBody(w, r, s.opts.MaxBodyBytes)
	if err != nil {
		return refuse(protocol.AttestationError, reasonTooLarge, err, "attest request")
	}
	var att protocol.Attestation
	if err := json.Unmarshal(body, &att); err != nil {
		return refuse(protocol.AttestationError, reasonBadRequest, err, "attest request is not a KBS Attestation")
	}
	grant, err := s.verify(ctx, ch.tee, ch.nonceString(), &att)
	if err != nil {
		s.metrics.attestations.WithLabelValues(ch.tee, "failure").Inc()
		return err
	}
	// Spent only now, atomically: of two attests racing on one challenge, one gets a token.
	if wait, err := s.spent.spend(ch, s.opts.Now()); err != nil {
		if errors.Is(err, errSpentFull) {
			e := refuse(protocol.AttestationError, reasonSpentFull, err, "retry later")
			e.RetryAfter = wait
			return e
		}
		return refuse(protocol.AttestationError, reasonSpent, err, "attest")
	}
	s.metrics.attestations.WithLabelValues(ch.tee, "success").Inc()
	log.G(ctx).WithField("tee", ch.tee).Info("kbs: attestation succeeded")
	// The attested session is the token: the cookie carries it, the server keeps nothing.
	expires := grant.expires
	if expires.IsZero() {
		expires = ch.expires
	}
	setSessionCookie(w, grant.token, expires)
	return writeJSON(w, protocol.AttestationResponse{Token: grant.token})
}

func sessionReason(err error) string {
	switch {
	case errors.Is(err, errSessionExpired):
		return reasonExpired
	case errors.Is(err, errSessionSpent):
		return reasonSpent
	case errors.Is(err, errCookieFormat), errors.Is(err, errCookieKey), errors.Is(err, errCookieAuth):
		return reasonBadCookie
	default:
		return reasonNoSession
	}
}

// verify checks the request against the session and hands the evidence, with the
// report_data recomputed here, to the attestation service.
func (s *Server) verify(ctx context.Context, tee, nonce string, att *protocol.Attestation) (*sessionGrant, error) {
	if subtle.ConstantTimeCompare([]byte(att.RuntimeData.Nonce), []byte(nonce)) != 1 {
		return nil, refuse(protocol.AttestationError, reasonNonce, nil,
			"the nonce in runtime-data differs from the session's challenge")
	}
	if att.TEEEvidence.Additional != "" {
		return nil, refuse(protocol.AttestationError, reasonEvidence, nil, "additional_evidence is not supported by this KBS")
	}
	if len(att.TEEEvidence.Primary) == 0 || string(att.TEEEvidence.Primary) == "null" {
		return nil, refuse(protocol.AttestationError, reasonEvidence, nil, "no primary_evidence")
	}
	pub, err := jwe.ParsePublicJWK(att.RuntimeData.TEEPubKey)
	if err != nil {
		return nil, refuse(protocol.AttestationError, reasonTEEPubKey, err, "runtime-data")
	}
	rd, err := binding.ReportData(nonce, att.RuntimeData.TEEPubKey, att.TEEEvidence.Additional)
	if err != nil {
		return nil, refuse(protocol.AttestationError, reasonTEEPubKey, err, "compute report_data")
	}
	res, err := s.opts.Attestation.Attest(ctx, &Evidence{
		TEE: tee, Evidence: att.TEEEvidence.Primary, ReportData: rd, InitData: att.InitData,
		Nonce: nonce, TEEPubKey: att.RuntimeData.TEEPubKey,
	})
	if err != nil {
		return nil, refuse(protocol.AttestationError, reasonEvidence, err, "verify %s evidence", tee)
	}
	return &sessionGrant{
		token: res.Token, claims: res.Claims, pubKey: pub, rawPubKey: att.RuntimeData.TEEPubKey,
		expires: claimsExpiry(res.Claims),
	}, nil
}

// claimsExpiry returns the "exp" claim as a time, or the zero time.
func claimsExpiry(claims map[string]any) time.Time {
	switch exp := claims["exp"].(type) {
	case float64:
		return time.Unix(int64(exp), 0)
	case int64:
		return time.Unix(exp, 0)
	case json.Number:
		if n, err := exp.Int64(); err == nil {
			return time.Unix(n, 0)
		}
	}
	return time.Time{}
}
