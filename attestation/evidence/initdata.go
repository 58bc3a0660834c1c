package evidence

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"

	"github.com/BurntSushi/toml"
)

// InitDataVersion is the only initdata version this package reads.
const InitDataVersion = "0.1.0"

// InitData is the "init-data" object of a KBS attest request: the initdata document exactly as
// the guest received it.
type InitData struct {
	// Format is "toml", the only format defined for initdata 0.1.0.
	Format string `json:"format"`
	// Body is the document's text; its digest is taken over these exact bytes.
	Body string `json:"body"`
}

// Digest reads the document's version and algorithm and returns the algorithm and
// hash(algorithm) over the exact bytes of Body. It does not interpret the [data] table.
func (d InitData) Digest() (algorithm string, digest []byte, err error) {
	if d.Format != "toml" {
		return "", nil, fmt.Errorf("initdata format %q is not supported (want \"toml\")", d.Format)
	}
	var head struct {
		Version   string `toml:"version"`
		Algorithm string `toml:"algorithm"`
	}
	if _, err := toml.Decode(d.Body, &head); err != nil {
		return "", nil, fmt.Errorf("initdata is not valid TOML: %w", err)
	}
	if head.Version != InitDataVersion {
		return "", nil, fmt.Errorf("initdata version %q is not supported (want %q)", head.Version, InitDataVersion)
	}
	switch head.Algorithm {
	case "sha256":
		sum := sha256.Sum256([]byte(d.Body))
		return head.Algorithm, sum[:], nil
	case "sha384":
		sum := sha512.Sum384([]byte(d.Body))
		return head.Algorithm, sum[:], nil
	case "sha512":
		sum := sha512.Sum512([]byte(d.Body))
		return head.Algorithm, sum[:], nil
	default:
		return "", nil, fmt.Errorf("initdata algorithm %q is not supported (want sha256, sha384 or sha512)", head.Algorithm)
	}
}

// PadDigest returns digest zero-padded or truncated to size bytes: the value a launch field of
// that size (layout.SNPHostDataSize, layout.TDXMRConfigIDSize) holds for the digest.
func PadDigest(digest []byte, size int) []byte {
	out := make([]byte, size)
	copy(out, digest)
	return out
}

// Claims returns the document's content for the annotated evidence of a token: version,
// algorithm and the [data] table, as TOML decodes them.
func (d InitData) Claims() (map[string]any, error) {
	if d.Format != "toml" {
		return nil, fmt.Errorf("initdata format %q is not supported (want \"toml\")", d.Format)
	}
	out := map[string]any{}
	if _, err := toml.Decode(d.Body, &out); err != nil {
		return nil, fmt.Errorf("initdata is not valid TOML: %w", err)
	}
	return out, nil
}
