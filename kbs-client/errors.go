package kbsclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// Error is a refusal by the KBS: an HTTP status other than 200, with the KBS's error document
// when it sent one.
type Error struct {
	// Op is the request that was refused: "auth", "attest" or "get resource <path>".
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Kind is the KBS error variant ("PolicyDeny", ...), or "" when the body was not a KBS
	// error document.
	Kind protocol.ErrorKind
	// Type and Detail are the error document's fields; Detail holds the start of the body when
	// it was not an error document.
	Type, Detail string
}

func (e *Error) Error() string {
	if e.Kind != "" {
		return fmt.Sprintf("KBS %s: %d %s: %s", e.Op, e.StatusCode, e.Kind, e.Detail)
	}
	return fmt.Sprintf("KBS %s: HTTP %d: %s", e.Op, e.StatusCode, e.Detail)
}

// Transient reports whether the request may succeed if tried again: 5xx, 408 and 429.
func (e *Error) Transient() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusRequestTimeout
}

// maxErrorBody bounds how much of a refusal's body is read.
const maxErrorBody = 16 << 10

// NewError makes the *Error of a refused request from its status and body: for tools that
// speak to the KBS outside the Client (the administrator's commands).
func NewError(op string, status int, body []byte) *Error {
	e := &Error{Op: op, StatusCode: status}
	var info protocol.ErrorInfo
	if json.Unmarshal(body, &info) == nil && info.Kind() != "" {
		e.Kind, e.Type, e.Detail = info.Kind(), info.Type, info.Detail
		return e
	}
	if len(body) > 200 {
		body = body[:200]
	}
	e.Detail = string(body)
	return e
}

// transient reports whether err is worth retrying: a refusal that says so, or a network error
// that is not the caller's context: connection refused or reset, a timeout of the transport,
// or a connection that closed before the reply was complete (a KBS killed between receiving a
// request and answering it: io.EOF from the transport, or io.ErrUnexpectedEOF in the middle
// of a reply's body; send reports both as *url.Error). An EOF of anything else (a token that
// does not parse) is not retried.
func transient(err error) bool {
	var ke *Error
	if errors.As(err, &ke) {
		return ke.Transient()
	}
	var ne net.Error
	var oe *net.OpError
	var ue *url.Error
	return errors.As(err, &oe) || errors.As(err, &ne) && ne.Timeout() ||
		errors.As(err, &ue) && (errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, io.ErrUnexpectedEOF))
}
