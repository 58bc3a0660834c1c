// Package imagepolicy is the one home of the image security policy format: the
// containers-policy.json document (containers/image's policy.json, as Confidential
// Containers' image-rs reads it) that a pod's initdata carries under the data key
// initdata.KeyImagePolicy ("image-policy.json"), so that the TEE measures it.
//
//	{
//	  "default": [{"type": "reject"}],
//	  "transports": {
//	    "docker": {
//	      "registry.example/app": [{"type": "sigstoreSigned", "keyData": "<base64 PEM>",
//	                                "signedIdentity": {"type": "matchRepository"}}],
//	      "registry.example":     [{"type": "insecureAcceptAnything"}]
//	    }
//	  }
//	}
//
// Parse is strict: an unknown field, requirement type, identity type or transport is an
// error naming where it is, so a bad policy stops the VM at boot like any other bad initdata.
// Requirements Veil cannot enforce (signedBy, keyless fulcio, rekor keys, remapIdentity) are
// refused with an error that says so, never ignored. Lookup finds the requirements that apply
// to an image reference, the most specific docker scope first, as containers/image does.
//
// The package only parses and matches; agent/imagesig verifies signatures against it. It is
// imported by the agent and by veil-genpolicy (which validates a policy before it writes it
// into initdata), and knows nothing of registries or keys beyond their text.
package imagepolicy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/distribution/reference"
)

// Requirement types (containers-policy.json "type").
const (
	TypeAccept         = "insecureAcceptAnything"
	TypeReject         = "reject"
	TypeSigstoreSigned = "sigstoreSigned"
	TypeSignedBy       = "signedBy"
)

// Signed identity types (containers-policy.json "signedIdentity.type").
const (
	IdentityMatchExact             = "matchExact"
	IdentityMatchRepoDigestOrExact = "matchRepoDigestOrExact"
	IdentityMatchRepository        = "matchRepository"
	IdentityExactReference         = "exactReference"
	IdentityExactRepository        = "exactRepository"
	IdentityRemap                  = "remapIdentity"
)

// KBSScheme prefixes a keyPath that names a KBS resource, fetched after attestation.
const KBSScheme = "kbs:///"

// TransportDocker is the only transport whose scopes apply to the guest's pulls.
const TransportDocker = "docker"

// otherTransports are containers/image's other transports: accepted (a policy.json copied
// from a host often names them) and checked, but never applied, since the guest pulls only
// from registries.
var otherTransports = []string{"atomic", "containers-storage", "dir", "docker-archive", "docker-daemon",
	"oci", "oci-archive", "ostree", "sif", "tarball"}

// Policy is a parsed containers-policy.json.
type Policy struct {
	// Default applies when no transport scope matches.
	Default []Requirement
	// Docker are the docker transport's scopes: "" (the transport's default), a host
	// ("registry.example:5000"), a wildcard host ("*.example.com"), a namespace or
	// repository ("registry.example/ns/app") or a reference ("registry.example/app:v1",
	// "registry.example/app@sha256:..."), each with its requirements.
	Docker map[string][]Requirement
}

// Requirement is one policy requirement. Every requirement of a scope must be satisfied.
type Requirement struct {
	Type string
	// Keys (sigstoreSigned) are the public keys of which one must have signed the image.
	Keys []Key
	// Identity (sigstoreSigned) is how the signature's claimed reference must relate to the
	// image's; the default is matchRepoDigestOrExact, as in containers/image.
	Identity Identity
}

// Key is a sigstoreSigned public key: PEM text from keyData, or a kbs:/// URI from keyPath
// whose resource (PEM) the agent fetches from the KBS after attestation.
type Key struct {
	PEM []byte // keyData, decoded from base64
	URI string // keyPath: kbs:///repository/type/tag
}

// String names the key for errors and logs: the URI, or "keyData".
func (k Key) String() string {
	if k.URI != "" {
		return k.URI
	}
	return "keyData"
}

// Identity is a signedIdentity.
type Identity struct {
	Type string
	// Reference is exactReference's dockerReference, Repository exactRepository's
	// dockerRepository.
	Reference, Repository string
}

// Rule is the requirements that apply to an image and where they come from.
type Rule struct {
	// Scope names what matched: `transports.docker["registry.example/app"]` or `default`.
	Scope        string
	Requirements []Requirement
}

// Describe names requirement i of r for errors: `transports.docker["x"][0] (sigstoreSigned)`.
func (r Rule) Describe(i int) string {
	return fmt.Sprintf("%s[%d] (%s)", r.Scope, i, r.Requirements[i].Type)
}

// Parse reads a containers-policy.json document strictly. The error says what is wrong and
// where ("transports.docker[\"r/app\"][0]: unknown field \"keyDta\"").
func Parse(raw []byte) (*Policy, error) {
	var doc struct {
		Default    *json.RawMessage                      `json:"default"`
		Transports map[string]map[string]json.RawMessage `json:"transports"`
	}
	if err := decodeStrict(raw, &doc); err != nil {
		return nil, fmt.Errorf("image policy: %w", err)
	}
	if doc.Default == nil {
		return nil, errors.New(`image policy: "default" is missing (containers-policy.json requires it; use [{"type":"insecureAcceptAnything"}] or [{"type":"reject"}])`)
	}
	p := &Policy{Docker: map[string][]Requirement{}}
	var err error
	if p.Default, err = parseRequirements(*doc.Default, "default"); err != nil {
		return nil, err
	}
	for tr, scopes := range doc.Transports {
		if tr != TransportDocker && !slices.Contains(otherTransports, tr) {
			return nil, fmt.Errorf("image policy: transports: unknown transport %q", tr)
		}
		for scope, raw := range scopes {
			where := fmt.Sprintf("transports.%s[%q]", tr, scope)
			reqs, err := parseRequirements(raw, where)
			if err != nil {
				return nil, err
			}
			if tr != TransportDocker {
				continue
			}
			if err := checkDockerScope(scope); err != nil {
				return nil, fmt.Errorf("image policy: %s: %w", where, err)
			}
			p.Docker[scope] = reqs
		}
	}
	return p, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON document")
	}
	return nil
}

// requirementJSON is every field containers/image defines for the requirement types, so that
// one Veil does not support is refused by name rather than as an unknown field.
type requirementJSON struct {
	Type                string           `json:"type"`
	KeyType             *string          `json:"keyType"`
	KeyPath             *string          `json:"keyPath"`
	KeyPaths            []string         `json:"keyPaths"`
	KeyData             *string          `json:"keyData"`
	KeyDatas            []string         `json:"keyDatas"`
	Fulcio              *json.RawMessage `json:"fulcio"`
	PKI                 *json.RawMessage `json:"pki"`
	RekorPublicKeyPath  *string          `json:"rekorPublicKeyPath"`
	RekorPublicKeyPaths []string         `json:"rekorPublicKeyPaths"`
	RekorPublicKeyData  *string          `json:"rekorPublicKeyData"`
	RekorPublicKeyDatas []string         `json:"rekorPublicKeyDatas"`
	SignedIdentity      *json.RawMessage `json:"signedIdentity"`
}

func parseRequirements(raw json.RawMessage, where string) ([]Requirement, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("image policy: %s: want a list of requirements: %w", where, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("image policy: %s: the requirement list is empty", where)
	}
	reqs := make([]Requirement, 0, len(list))
	for i, r := range list {
		w := fmt.Sprintf("%s[%d]", where, i)
		req, err := parseRequirement(r)
		if err != nil {
			return nil, fmt.Errorf("image policy: %s: %w", w, err)
		}
		reqs = append(reqs, req)
	}
	return reqs, nil
}

func parseRequirement(raw json.RawMessage) (Requirement, error) {
	var j requirementJSON
	if err := decodeStrict(raw, &j); err != nil {
		return Requirement{}, err
	}
	switch j.Type {
	case TypeAccept, TypeReject:
		var m map[string]json.RawMessage
		_ = json.Unmarshal(raw, &m)
		for k := range m {
			if k != "type" {
				return Requirement{}, fmt.Errorf("%s takes no field but \"type\", found %q", j.Type, k)
			}
		}
		return Requirement{Type: j.Type}, nil
	case TypeSigstoreSigned:
		return parseSigstore(j)
	case TypeSignedBy:
		return Requirement{}, errors.New("signedBy (GPG simple signing) is not supported by Veil: sign with cosign and use sigstoreSigned")
	case "":
		return Requirement{}, errors.New(`"type" is missing`)
	}
	return Requirement{}, fmt.Errorf("unknown requirement type %q (want %s, %s or %s)", j.Type, TypeAccept, TypeReject, TypeSigstoreSigned)
}

func parseSigstore(j requirementJSON) (Requirement, error) {
	switch {
	case j.KeyType != nil:
		return Requirement{}, errors.New(`"keyType" belongs to signedBy, not sigstoreSigned`)
	case j.Fulcio != nil:
		return Requirement{}, errors.New(`keyless signatures ("fulcio") are not supported: the guest has no Fulcio/Rekor trust root; sign with a key (cosign sign --key) and use keyData or keyPath`)
	case j.PKI != nil:
		return Requirement{}, errors.New(`"pki" (X.509 signing certificates) is not supported: use keyData or keyPath`)
	case j.RekorPublicKeyPath != nil || j.RekorPublicKeyData != nil || len(j.RekorPublicKeyPaths) > 0 || len(j.RekorPublicKeyDatas) > 0:
		return Requirement{}, errors.New(`Rekor keys ("rekorPublicKey*") are not supported: the guest verifies key signatures offline, without a transparency log`)
	}
	r := Requirement{Type: TypeSigstoreSigned}
	n := 0
	if j.KeyPath != nil {
		n++
		j.KeyPaths = append(j.KeyPaths, *j.KeyPath)
	} else if len(j.KeyPaths) > 0 {
		n++
	}
	if j.KeyData != nil {
		n++
		j.KeyDatas = append(j.KeyDatas, *j.KeyData)
	} else if len(j.KeyDatas) > 0 {
		n++
	}
	if n != 1 {
		return Requirement{}, errors.New("sigstoreSigned needs exactly one of keyPath, keyPaths, keyData and keyDatas")
	}
	for _, p := range j.KeyPaths {
		if err := checkKBSURI(p); err != nil {
			return Requirement{}, fmt.Errorf("keyPath %q: %w", p, err)
		}
		r.Keys = append(r.Keys, Key{URI: p})
	}
	for i, d := range j.KeyDatas {
		pemText, err := base64.StdEncoding.DecodeString(d)
		if err != nil {
			return Requirement{}, fmt.Errorf("keyData %d: not base64: %w", i, err)
		}
		if b, _ := pem.Decode(pemText); b == nil || b.Type != "PUBLIC KEY" {
			return Requirement{}, fmt.Errorf("keyData %d: not a base64-encoded PEM \"PUBLIC KEY\" (cosign.pub)", i)
		}
		r.Keys = append(r.Keys, Key{PEM: pemText})
	}
	id, err := parseIdentity(j.SignedIdentity)
	if err != nil {
		return Requirement{}, fmt.Errorf("signedIdentity: %w", err)
	}
	r.Identity = id
	return r, nil
}

// checkKBSURI accepts kbs:///repository/type/tag (three non-empty segments), the only
// keyPath form a guest can use: it has no file system the host cannot write.
func checkKBSURI(p string) error {
	rest, ok := strings.CutPrefix(p, KBSScheme)
	if !ok {
		return errors.New("only kbs:///<repository>/<type>/<tag> URIs are supported (the key is fetched from the KBS after attestation); for an inline key use keyData")
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || slices.Contains(parts, "") || slices.Contains(parts, "..") || slices.Contains(parts, ".") {
		return errors.New("want kbs:///<repository>/<type>/<tag>")
	}
	return nil
}

func parseIdentity(raw *json.RawMessage) (Identity, error) {
	if raw == nil {
		return Identity{Type: IdentityMatchRepoDigestOrExact}, nil
	}
	var j struct {
		Type             string  `json:"type"`
		DockerReference  *string `json:"dockerReference"`
		DockerRepository *string `json:"dockerRepository"`
		Prefix           *string `json:"prefix"`
		SignedPrefix     *string `json:"signedPrefix"`
	}
	if err := decodeStrict(*raw, &j); err != nil {
		return Identity{}, err
	}
	noArgs := j.DockerReference == nil && j.DockerRepository == nil && j.Prefix == nil && j.SignedPrefix == nil
	switch j.Type {
	case IdentityMatchExact, IdentityMatchRepoDigestOrExact, IdentityMatchRepository:
		if !noArgs {
			return Identity{}, fmt.Errorf("%s takes no field but \"type\"", j.Type)
		}
		return Identity{Type: j.Type}, nil
	case IdentityExactReference:
		if j.DockerReference == nil || j.DockerRepository != nil || j.Prefix != nil || j.SignedPrefix != nil {
			return Identity{}, errors.New(`exactReference takes "dockerReference" only`)
		}
		r, err := reference.ParseNormalizedNamed(*j.DockerReference)
		if err != nil {
			return Identity{}, fmt.Errorf("dockerReference %q: %w", *j.DockerReference, err)
		}
		if reference.IsNameOnly(r) {
			return Identity{}, fmt.Errorf("dockerReference %q: needs a tag or a digest", *j.DockerReference)
		}
		return Identity{Type: j.Type, Reference: r.String()}, nil
	case IdentityExactRepository:
		if j.DockerRepository == nil || j.DockerReference != nil || j.Prefix != nil || j.SignedPrefix != nil {
			return Identity{}, errors.New(`exactRepository takes "dockerRepository" only`)
		}
		r, err := reference.ParseNormalizedNamed(*j.DockerRepository)
		if err != nil || !reference.IsNameOnly(r) {
			return Identity{}, fmt.Errorf("dockerRepository %q: want a repository without tag or digest", *j.DockerRepository)
		}
		return Identity{Type: j.Type, Repository: r.Name()}, nil
	case IdentityRemap:
		return Identity{}, errors.New("remapIdentity is not supported by Veil")
	case "":
		return Identity{}, errors.New(`"type" is missing`)
	}
	return Identity{}, fmt.Errorf("unknown type %q (want %s, %s, %s, %s or %s)", j.Type, IdentityMatchExact,
		IdentityMatchRepoDigestOrExact, IdentityMatchRepository, IdentityExactReference, IdentityExactRepository)
}
