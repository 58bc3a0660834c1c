// Package initdata is the one home of initdata: the TOML document that carries a pod's agent
// policy (and attestation-agent and CDH configuration) into a confidential VM. The TEE
// measures its digest at launch (SNP HOST_DATA, TDX MRCONFIGID), so a relying party that
// checks the attestation knows which policy the guest enforces.
//
//	version = "0.1.0"
//	algorithm = "sha256"          # or sha384, sha512
//	[data]
//	"policy.rego" = '''...'''
//	"aa.toml" = '''...'''
//	"veil.toml" = '''
//	[image]
//	insecure_registries = ["10.88.77.1:5000"]
//	'''
//
// The digest is the hash, with the document's algorithm, of the document's exact bytes as
// delivered: never of a re-encoding.
//
// Every reader uses this package, so that a document one side accepts is one the other
// accepts too, with the same digest: the shim (which builds the disk and binds the digest to
// the launch), genpolicy (which writes documents with Marshal), the agent (which reads the
// disk and checks the digest against the launch), the KBS (which reads the attest request's
// init-data with ParseFormat for the digest it binds and the claims it issues), the verifier
// (which pads the digest to the launch field) and kbs-client. Parse holds the one set of
// acceptance rules; Digest and HostData the one digest and its fitting to HOST_DATA (32
// bytes) or MRCONFIGID (48 bytes); encode.go the pod annotation; disk.go the disk that
// delivers a document to the guest.
package initdata

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"maps"
	"slices"

	"github.com/BurntSushi/toml"

	"github.com/veil-runtime/veil/attestation/layout"
)

// Version is the only initdata version understood.
const Version = "0.1.0"

// Format is the only format of the KBS attest request's init-data object ("format" next to
// the document's "body") that initdata 0.1.0 defines.
const Format = "toml"

// Keys of the data table that the ecosystem uses.
const (
	KeyPolicy = "policy.rego" // the agent policy (Rego)
	KeyAA     = "aa.toml"     // attestation-agent configuration
	KeyCDH    = "cdh.toml"    // confidential-data-hub configuration
	KeyAgent  = "veil.toml"   // Veil's agent settings (agent/launch.Settings)
	// KeyImagePolicy is the image security policy, a containers-policy.json document
	// (policy/imagepolicy), enforced by the agent on the images it pulls (agent/imagesig).
	KeyImagePolicy = "image-policy.json"
)

// MaxDocumentSize bounds a document, before or after decompression.
const MaxDocumentSize = 1 << 20

// Document is a parsed initdata document.
type Document struct {
	Version   string
	Algorithm string
	Data      map[string]string
	raw       []byte
}

// Algorithms lists the digest algorithms initdata may name.
func Algorithms() []string { return []string{"sha256", "sha384", "sha512"} }

func newHash(algorithm string) (hash.Hash, error) {
	switch algorithm {
	case "sha256":
		return sha256.New(), nil
	case "sha384":
		return sha512.New384(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("algorithm: %q is not one of %q", algorithm, Algorithms())
}

// ParseFormat parses body, a document that came with its format's name: the init-data object
// of a KBS attest request, {"format": "toml", "body": "<the document>"}. Any format other
// than Format is refused; the body is then held to Parse's rules.
func ParseFormat(format string, body []byte) (*Document, error) {
	if format != Format {
		return nil, fmt.Errorf("initdata: format: %q is not supported (want %q)", format, Format)
	}
	return Parse(body)
}

// Parse checks raw, an initdata document, and returns it. An error names the field at fault.
// The rules, the only ones any reader applies: at most MaxDocumentSize bytes; valid TOML (so
// no key defined twice); version is Version; algorithm one of Algorithms; data a table whose
// values are all strings; no other top-level key.
func Parse(raw []byte) (*Document, error) {
	if len(raw) > MaxDocumentSize {
		return nil, fmt.Errorf("initdata: %d bytes, more than the %d allowed", len(raw), MaxDocumentSize)
	}
	var m map[string]any
	if _, err := toml.Decode(string(raw), &m); err != nil {
		return nil, fmt.Errorf("initdata: not valid TOML: %w", err)
	}
	d := &Document{raw: slices.Clone(raw), Data: map[string]string{}}
	var err error
	if d.Version, err = stringField(m, "version"); err != nil {
		return nil, err
	}
	if d.Version != Version {
		return nil, fmt.Errorf("initdata: version: %q is not supported (want %q)", d.Version, Version)
	}
	if d.Algorithm, err = stringField(m, "algorithm"); err != nil {
		return nil, err
	}
	if _, err := newHash(d.Algorithm); err != nil {
		return nil, fmt.Errorf("initdata: %w", err)
	}
	table, ok := m["data"]
	if !ok {
		return nil, fmt.Errorf("initdata: data: missing")
	}
	t, ok := table.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("initdata: data: is a %s, want a table", tomlType(table))
	}
	for k, v := range t {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("initdata: data.%q: is a %s, want a string", k, tomlType(v))
		}
		d.Data[k] = s
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k != "version" && k != "algorithm" && k != "data" {
			return nil, fmt.Errorf("initdata: %s: unknown field (want version, algorithm and data)", k)
		}
	}
	return d, nil
}

func stringField(m map[string]any, name string) (string, error) {
	v, ok := m[name]
	if !ok {
		return "", fmt.Errorf("initdata: %s: missing", name)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("initdata: %s: is a %s, want a string", name, tomlType(v))
	}
	return s, nil
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case map[string]any:
		return "table"
	case []any, []map[string]any:
		return "array"
	default:
		return "date or time"
	}
}

// Raw returns the document's bytes as delivered.
func (d *Document) Raw() []byte { return d.raw }

// Digest returns the hash of the document's bytes with its algorithm.
func (d *Document) Digest() []byte {
	dg, _ := Digest(d.Algorithm, d.raw) // Parse checked the algorithm
	return dg
}

// Policy returns the agent policy the document carries, if any.
func (d *Document) Policy() (string, bool) {
	p, ok := d.Data[KeyPolicy]
	return p, ok
}

// Claims returns the data table as the KBS puts it in a token's annotated evidence
// (init_data_claims): a copy, each value a string.
func (d *Document) Claims() map[string]any {
	out := make(map[string]any, len(d.Data))
	for k, v := range d.Data {
		out[k] = v
	}
	return out
}

// Digest hashes raw with algorithm (sha256, sha384 or sha512).
func Digest(algorithm string, raw []byte) ([]byte, error) {
	h, err := newHash(algorithm)
	if err != nil {
		return nil, err
	}
	h.Write(raw)
	return h.Sum(nil), nil
}

// HostData fits a digest to a launch field of size bytes (layout.SNPHostDataSize,
// layout.TDXMRConfigIDSize): zero-padded when shorter, truncated when longer.
func HostData(digest []byte, size int) []byte {
	out := make([]byte, size)
	copy(out, digest)
	return out
}

// SNPHostData is HostData for SNP's HOST_DATA (layout.SNPHostDataSize, 32 bytes): a sha384 or
// sha512 digest is truncated to its first 32 bytes.
func SNPHostData(digest []byte) []byte { return HostData(digest, layout.SNPHostDataSize) }

// TDXMRConfigID is HostData for TDX's MRCONFIGID (layout.TDXMRConfigIDSize, 48 bytes).
func TDXMRConfigID(digest []byte) []byte { return HostData(digest, layout.TDXMRConfigIDSize) }
