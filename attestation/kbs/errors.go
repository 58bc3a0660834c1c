package kbs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// Denial reasons, the "reason" label of veil_kbs_denials_total. A small fixed set, so that
// the metric's cardinality stays bounded.
const (
	reasonBadRequest    = "bad_request"
	reasonVersion       = "version"
	reasonUnknownTEE    = "unknown_tee"
	reasonRateLimited   = "rate_limited"
	reasonSpentFull     = "spent_nonces_full"
	reasonNoSession     = "no_session"
	reasonBadCookie     = "bad_cookie"
	reasonExpired       = "session_expired"
	reasonSpent         = "session_spent"
	reasonNonce         = "nonce_mismatch"
	reasonTEEPubKey     = "tee_pubkey"
	reasonEvidence      = "evidence"
	reasonNoToken       = "no_token"
	reasonToken         = "token"
	reasonPolicy        = "policy"
	reasonPath          = "path"
	reasonNotFound      = "not_found"
	reasonAdmin         = "admin"
	reasonInternal      = "internal"
	reasonJWE           = "jwe"
	reasonTooLarge      = "too_large"
	reasonUnimplemented = "unimplemented"
	reasonExists        = "exists"
)

// Error is a refusal: its kind becomes the error document's type, Detail its detail, and
// Reason the label of the denial metric.
type Error struct {
	Kind   protocol.ErrorKind
	Reason string
	Detail string
	Err    error
	// RetryAfter, when positive, is sent as the Retry-After header (429 and 503).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// Status is 404 for InvalidRequestPath and 401 for every other kind, as the protocol says;
// 412 for an administrator's create-only write of a resource that exists (If-None-Match: *,
// an extension of Veil's); 429 for a client over its rate limit and 503 while the record of
// spent nonces is full (both with Retry-After, and both retried by the clients).
func (e *Error) Status() int {
	switch {
	case e.Kind == protocol.InvalidRequestPath:
		return http.StatusNotFound
	case e.Reason == reasonExists:
		return http.StatusPreconditionFailed
	case e.Reason == reasonRateLimited:
		return http.StatusTooManyRequests
	case e.Reason == reasonSpentFull:
		return http.StatusServiceUnavailable
	}
	return http.StatusUnauthorized
}

func refuse(kind protocol.ErrorKind, reason string, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, Reason: reason, Detail: fmt.Sprintf(format, args...), Err: err}
}

// writeError sends the error document and counts the denial. The detail shown to the client
// includes the wrapped error's text: it names what failed, never a secret, since no handler
// wraps secret material into errors.
func (s *Server) writeError(ctx context.Context, w http.ResponseWriter, endpoint string, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = refuse(protocol.PluginInternalError, reasonInternal, err, "internal error")
	}
	detail := e.Detail
	if e.Err != nil {
		detail += ": " + e.Err.Error()
	}
	s.metrics.denials.WithLabelValues(endpoint, e.Reason).Inc()
	entry := log.G(ctx).WithFields(log.Fields{"endpoint": endpoint, "kind": e.Kind, "reason": e.Reason}).WithError(err)
	if e.Reason == reasonRateLimited {
		// A flood must not become a flood of logs: the metric counts these.
		entry.Debug("kbs: request refused")
	} else {
		entry.Info("kbs: request refused")
	}
	body, _ := json.Marshal(protocol.ErrorInfo{Type: e.Kind.Type(), Detail: detail})
	w.Header().Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.RetryAfter))
	}
	w.WriteHeader(e.Status())
	_, _ = w.Write(body)
}
