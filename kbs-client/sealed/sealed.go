// Package sealed is the format of sealed secrets, the values Confidential Containers' data hub
// unseals in a confidential guest: "sealed." followed by a compact JWS (base64url protected
// header, payload, signature) whose payload is a JSON secret. A "vault" secret names a KBS
// resource that IS the secret; an "envelope" secret carries the secret encrypted with a data
// key (AES-256-GCM), and the data key wrapped (AES key wrap, RFC 3394) with a key-encryption
// key that is a KBS resource.
//
// Unlike CoCo's early fake header and signature, the JWS is always verified: ES256 only, the
// protected header's kid a kbs:/// URI naming the verification key (a P-256 public key, JWK or
// PEM) that the guest fetches from the KBS it attested to, and, when the measured
// configuration lists keys, one of those. So only the holder of a trusted signing key makes a
// value that unseals, and the key comes from the KBS, never from the host.
//
// The package parses strictly (unknown fields, wrong version, type or provider are errors
// that name what is wrong), seals (Seal, NewVault, NewEnvelope) and unseals (Open) with any
// Fetcher of KBS resources. It imports the KBS wire package for resource URIs and nothing of
// the agent, the shim or the KBS server, so the agent and veil-kbs-client share it. Errors
// never contain a plaintext or a key.
package sealed

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// Prefix starts every sealed value.
const Prefix = "sealed."

// Version is the only secret version there is.
const Version = "0.1.0"

// Secret types.
const (
	TypeVault    = "vault"
	TypeEnvelope = "envelope"
)

// ProviderKBS is the only provider the guest knows: the KBS it attested to.
const ProviderKBS = "kbs"

// WrapA256GCM is the only wrap_type accepted: AES-256-GCM with a 12-byte iv. CoCo's A256CTR
// has no integrity and is refused.
const WrapA256GCM = "A256GCM"

// MaxValue bounds a sealed value (the JWS text after Prefix).
const MaxValue = 1 << 20

// ErrMalformed is wrapped by every refusal of a value's form.
var ErrMalformed = errors.New("malformed sealed secret")

// IsSealed reports whether v is meant as a sealed value: it starts with Prefix.
func IsSealed(v []byte) bool { return bytes.HasPrefix(v, []byte(Prefix)) }

// Secret is the payload of a sealed value.
type Secret struct {
	Version string `json:"version"`
	Type    string `json:"type"`
	// Name is a vault secret's resource, kbs:///repo/type/tag.
	Name string `json:"name,omitempty"`
	// KeyID is an envelope's key-encryption key, kbs:///repo/type/tag (32 bytes).
	KeyID string `json:"key_id,omitempty"`
	// EncryptedKey is the data key wrapped with the KEK (RFC 3394), standard base64.
	EncryptedKey string `json:"encrypted_key,omitempty"`
	// EncryptedData is the secret sealed with the data key (AES-256-GCM, tag appended),
	// standard base64.
	EncryptedData string `json:"encrypted_data,omitempty"`
	// WrapType is the cipher of EncryptedData (WrapA256GCM).
	WrapType string `json:"wrap_type,omitempty"`
	// IV is EncryptedData's nonce, standard base64 (12 bytes).
	IV string `json:"iv,omitempty"`

	Provider         string         `json:"provider"`
	ProviderSettings map[string]any `json:"provider_settings"`
	Annotations      map[string]any `json:"annotations"`
}

// vaultJSON and envelopeJSON are the exact field sets of each type (strict decoding).
type vaultJSON struct {
	Version          string          `json:"version"`
	Type             string          `json:"type"`
	Name             *string         `json:"name"`
	Provider         *string         `json:"provider"`
	ProviderSettings *map[string]any `json:"provider_settings"`
	Annotations      *map[string]any `json:"annotations"`
}

type envelopeJSON struct {
	Version          string          `json:"version"`
	Type             string          `json:"type"`
	KeyID            *string         `json:"key_id"`
	EncryptedKey     *string         `json:"encrypted_key"`
	EncryptedData    *string         `json:"encrypted_data"`
	WrapType         *string         `json:"wrap_type"`
	IV               *string         `json:"iv"`
	Provider         *string         `json:"provider"`
	ProviderSettings *map[string]any `json:"provider_settings"`
	Annotations      *map[string]any `json:"annotations"`
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// ParseSecret decodes and checks a payload: the version, the type, exactly that type's
// fields (each present), provider kbs, kbs:/// URIs, and for an envelope the base64 fields,
// the wrap type and the iv's length.
func ParseSecret(payload []byte) (*Secret, error) {
	var head struct {
		Version string `json:"version"`
		Type    string `json:"type"`
	}
	if err := json.Unmarshal(payload, &head); err != nil {
		return nil, malformed("payload is not a JSON object: %v", err)
	}
	if head.Version != Version {
		return nil, malformed("payload version %q: want %q", head.Version, Version)
	}
	var s *Secret
	var err error
	switch head.Type {
	case TypeVault:
		s, err = parseVault(payload)
	case TypeEnvelope:
		s, err = parseEnvelope(payload)
	default:
		return nil, malformed("payload type %q: want %q or %q", head.Type, TypeVault, TypeEnvelope)
	}
	if err != nil {
		return nil, err
	}
	return s, s.Check()
}

func strict(payload []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return malformed("payload: %v", err)
	}
	if d.More() {
		return malformed("payload: data after the JSON object")
	}
	return nil
}

func parseVault(payload []byte) (*Secret, error) {
	var v vaultJSON
	if err := strict(payload, &v); err != nil {
		return nil, err
	}
	if err := missing(map[string]bool{"name": v.Name == nil, "provider": v.Provider == nil,
		"provider_settings": v.ProviderSettings == nil, "annotations": v.Annotations == nil}); err != nil {
		return nil, err
	}
	return &Secret{Version: v.Version, Type: v.Type, Name: *v.Name, Provider: *v.Provider,
		ProviderSettings: *v.ProviderSettings, Annotations: *v.Annotations}, nil
}

func parseEnvelope(payload []byte) (*Secret, error) {
	var e envelopeJSON
	if err := strict(payload, &e); err != nil {
		return nil, err
	}
	if err := missing(map[string]bool{"key_id": e.KeyID == nil, "encrypted_key": e.EncryptedKey == nil,
		"encrypted_data": e.EncryptedData == nil, "wrap_type": e.WrapType == nil, "iv": e.IV == nil,
		"provider": e.Provider == nil, "provider_settings": e.ProviderSettings == nil,
		"annotations": e.Annotations == nil}); err != nil {
		return nil, err
	}
	return &Secret{Version: e.Version, Type: e.Type, KeyID: *e.KeyID, EncryptedKey: *e.EncryptedKey,
		EncryptedData: *e.EncryptedData, WrapType: *e.WrapType, IV: *e.IV, Provider: *e.Provider,
		ProviderSettings: *e.ProviderSettings, Annotations: *e.Annotations}, nil
}

// missing names the first absent field, in a fixed order.
func missing(absent map[string]bool) error {
	for _, f := range []string{"name", "key_id", "encrypted_key", "encrypted_data", "wrap_type", "iv",
		"provider", "provider_settings", "annotations"} {
		if absent[f] {
			return malformed("payload field %q is missing", f)
		}
	}
	return nil
}

// Check validates a Secret's fields for its type.
func (s *Secret) Check() error {
	if s.Version != Version {
		return malformed("payload version %q: want %q", s.Version, Version)
	}
	if s.Provider != ProviderKBS {
		return malformed("payload provider %q: only %q is supported in the guest", s.Provider, ProviderKBS)
	}
	if len(s.ProviderSettings) != 0 {
		return malformed("payload provider_settings must be empty for provider %q", ProviderKBS)
	}
	switch s.Type {
	case TypeVault:
		if _, err := protocol.ParseResourceURI(s.Name); err != nil {
			return malformed("payload name: %v", err)
		}
		if s.KeyID != "" || s.EncryptedKey != "" || s.EncryptedData != "" || s.WrapType != "" || s.IV != "" {
			return malformed("a vault secret has only name, provider, provider_settings and annotations")
		}
	case TypeEnvelope:
		if s.Name != "" {
			return malformed("an envelope secret has no name")
		}
		if _, err := protocol.ParseResourceURI(s.KeyID); err != nil {
			return malformed("payload key_id: %v", err)
		}
		if s.WrapType != WrapA256GCM {
			return malformed("payload wrap_type %q: only %s is accepted", s.WrapType, WrapA256GCM)
		}
		for _, f := range []struct {
			name, v string
			size    int
		}{{"encrypted_key", s.EncryptedKey, -1}, {"encrypted_data", s.EncryptedData, -1}, {"iv", s.IV, gcmNonce}} {
			b, err := base64.StdEncoding.DecodeString(f.v)
			if err != nil {
				return malformed("payload %s is not standard base64: %v", f.name, err)
			}
			if f.size >= 0 && len(b) != f.size {
				return malformed("payload %s is %d bytes, want %d", f.name, len(b), f.size)
			}
			if len(b) == 0 {
				return malformed("payload %s is empty", f.name)
			}
		}
	default:
		return malformed("payload type %q: want %q or %q", s.Type, TypeVault, TypeEnvelope)
	}
	return nil
}

// Resource returns the KBS resource that unsealing s needs besides the verification key: a
// vault's name or an envelope's key_id.
func (s *Secret) Resource() string {
	if s.Type == TypeVault {
		return s.Name
	}
	return s.KeyID
}

// NewVault returns a vault secret naming the KBS resource uri.
func NewVault(uri string) (*Secret, error) {
	s := &Secret{Version: Version, Type: TypeVault, Name: uri, Provider: ProviderKBS,
		ProviderSettings: map[string]any{}, Annotations: map[string]any{}}
	return s, s.Check()
}

// splitValue checks the prefix and the three base64url parts of a sealed value and returns
// the compact JWS.
func splitValue(value string) (string, error) {
	jws, ok := strings.CutPrefix(value, Prefix)
	if !ok {
		return "", malformed("the value does not start with %q", Prefix)
	}
	if len(jws) > MaxValue {
		return "", malformed("the value is %d bytes, more than %d", len(jws), MaxValue)
	}
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return "", malformed("want %s<header>.<payload>.<signature>, got %d dot-separated parts after the prefix", Prefix, len(parts))
	}
	for i, name := range []string{"protected header", "payload", "signature"} {
		if parts[i] == "" {
			return "", malformed("the %s is empty", name)
		}
		if _, err := base64.RawURLEncoding.DecodeString(parts[i]); err != nil {
			return "", malformed("the %s is not base64url without padding: %v", name, err)
		}
	}
	return jws, nil
}
