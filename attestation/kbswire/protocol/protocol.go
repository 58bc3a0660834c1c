// Package protocol holds the wire format of the Key Broker Service protocol 0.4.0 (the
// Confidential Containers "Trustee" KBS, RCAR handshake): the JSON messages, the error
// document, the session cookie and the resource paths. Both Veil's KBS server and its
// kbs-client use it; it has no server code, so the guest may import it.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Version is the only protocol version Veil speaks; the server refuses any other string.
const Version = "0.4.0"

// PathPrefix is the prefix of every KBS endpoint.
const PathPrefix = "/kbs/v0"

// SessionCookie is the name of the cookie that carries a session id.
const SessionCookie = "kbs-session-id"

// NonceSize is the number of random bytes in a challenge nonce (sent as std base64).
const NonceSize = 32

// Request is the body of POST /kbs/v0/auth.
type Request struct {
	Version string `json:"version"`
	TEE     string `json:"tee"`
	// ExtraParams is TEE-specific; Veil's client sends {} and the server ignores it.
	ExtraParams json.RawMessage `json:"extra-params,omitempty"`
}

// Challenge is the reply to POST /kbs/v0/auth.
type Challenge struct {
	// Nonce is the std base64 of NonceSize random bytes; it is bound as the string.
	Nonce string `json:"nonce"`
	// ExtraParams is "" from Veil's server.
	ExtraParams json.RawMessage `json:"extra-params"`
}

// Attestation is the body of POST /kbs/v0/attest.
type Attestation struct {
	InitData    *InitData   `json:"init-data"`
	RuntimeData RuntimeData `json:"runtime-data"`
	TEEEvidence TEEEvidence `json:"tee-evidence"`
}

// InitData is the initdata document as the guest received it.
type InitData struct {
	// Format is "toml" for the initdata TOML document.
	Format string `json:"format"`
	// Body is the document text, hashed as delivered.
	Body string `json:"body"`
}

// RuntimeData binds the evidence to the session: the challenge nonce and the key that the
// resources are encrypted to.
type RuntimeData struct {
	Nonce     string          `json:"nonce"`
	TEEPubKey json.RawMessage `json:"tee-pubkey"`
}

// TEEEvidence carries the evidence of the TEE named in the auth request.
type TEEEvidence struct {
	Primary json.RawMessage `json:"primary_evidence"`
	// Additional is a JSON string; Veil sends "" and its server refuses anything else.
	Additional string `json:"additional_evidence"`
}

// AttestationResponse is the reply to POST /kbs/v0/attest.
type AttestationResponse struct {
	Token string `json:"token"`
}

// ErrorTypePrefix prefixes the type of every error document.
const ErrorTypePrefix = "https://github.com/confidential-containers/kbs/errors/"

// ErrorKind is the variant name of a KBS error.
type ErrorKind string

// The error variants of the protocol.
const (
	AttestationError    ErrorKind = "AttestationError"
	PolicyDeny          ErrorKind = "PolicyDeny"
	TokenNotFound       ErrorKind = "TokenNotFound"
	TokenVerifierError  ErrorKind = "TokenVerifierError"
	JweError            ErrorKind = "JweError"
	PluginInternalError ErrorKind = "PluginInternalError"
	SerdeError          ErrorKind = "SerdeError"
	InvalidRequestPath  ErrorKind = "InvalidRequestPath"
	// AdminAuthAccess is Trustee's variant for a refused administrator request.
	AdminAuthAccess ErrorKind = "AdminAuthAccess"
)

// Type returns the URI that the error document carries for this kind.
func (k ErrorKind) Type() string { return ErrorTypePrefix + string(k) }

// ErrorInfo is the JSON body of every refusal.
type ErrorInfo struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

// Kind returns the variant of an error document, or "" when its type is not a KBS error URI.
func (e ErrorInfo) Kind() ErrorKind {
	kind, ok := strings.CutPrefix(e.Type, ErrorTypePrefix)
	if !ok {
		return ""
	}
	return ErrorKind(kind)
}

// ErrInvalidPath is wrapped by every resource path and URI refusal.
var ErrInvalidPath = errors.New("invalid resource path")

// ResourcePath names one resource: repository/type/tag.
type ResourcePath struct {
	Repository, Type, Tag string
}

// maxSegment bounds one path segment.
const maxSegment = 128

// String returns "repository/type/tag".
func (p ResourcePath) String() string { return p.Repository + "/" + p.Type + "/" + p.Tag }

// URI returns "kbs:///repository/type/tag".
func (p ResourcePath) URI() string { return "kbs:///" + p.String() }

// ParseResourcePath parses "repository/type/tag". Each segment must match
// [A-Za-z0-9_-][A-Za-z0-9._-]* (the rule Trustee applies), so "." and ".." and hidden names
// are refused, and be at most 128 bytes.
func ParseResourcePath(s string) (ResourcePath, error) {
	var segs [3]string
	rest := s
	for i := range segs {
		seg := rest
		if i < 2 {
			j := strings.IndexByte(rest, '/')
			if j < 0 {
				return ResourcePath{}, fmt.Errorf("%w %q: want repository/type/tag", ErrInvalidPath, s)
			}
			seg, rest = rest[:j], rest[j+1:]
		}
		if err := checkSegment(seg); err != nil {
			return ResourcePath{}, fmt.Errorf("%w %q: %w", ErrInvalidPath, s, err)
		}
		segs[i] = seg
	}
	return ResourcePath{Repository: segs[0], Type: segs[1], Tag: segs[2]}, nil
}

// ParseResourceURI parses "kbs:///repository/type/tag". A host part is refused: the KBS is
// chosen by the client's configuration, not by the URI.
func ParseResourceURI(uri string) (ResourcePath, error) {
	const scheme = "kbs://"
	rest, ok := strings.CutPrefix(uri, scheme)
	if !ok {
		return ResourcePath{}, fmt.Errorf("%w %q: want kbs:///repository/type/tag", ErrInvalidPath, uri)
	}
	if !strings.HasPrefix(rest, "/") {
		return ResourcePath{}, fmt.Errorf("%w %q: a host in the URI is not supported, want kbs:///repository/type/tag", ErrInvalidPath, uri)
	}
	p, err := ParseResourcePath(rest[1:])
	if err != nil {
		return ResourcePath{}, fmt.Errorf("resource URI: %w", err)
	}
	return p, nil
}

func checkSegment(seg string) error {
	if seg == "" {
		return errors.New("empty segment")
	}
	if len(seg) > maxSegment {
		return fmt.Errorf("segment longer than %d bytes", maxSegment)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		if !ok && (c != '.' || i == 0) {
			return fmt.Errorf("segment %q: character %q not allowed", seg, c)
		}
	}
	return nil
}

// RepositoryBindingPath is the administrator's endpoint, below PathPrefix, that binds a
// repository to initdata digests: POST (a RepositoryBinding) replaces the binding, GET
// returns it. Veil's own: Trustee has no such endpoint.
const RepositoryBindingPath = "/repository-binding/"

// RepositoryBinding lists the initdata digests (hex) whose guests may read a repository
// under Veil's default resource policy. An empty list removes the binding.
type RepositoryBinding struct {
	InitData []string `json:"init_data"`
}
