package imagepull

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Sentinel errors. Every error Pull returns that stems from one of these checks wraps the
// matching sentinel, so callers can test it with errors.Is.
var (
	// ErrNotPinned: the reference names a tag and Options.Digest is empty.
	ErrNotPinned = errors.New("image reference is not pinned to a digest")
	// ErrDigestMismatch: a manifest, config or layer does not hash to the digest it must have.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrInsecure: plain HTTP to a registry that Options.InsecureRegistries does not list.
	ErrInsecure = errors.New("plain HTTP refused")
	// ErrLimit: a manifest, config, layer count or unpacked size exceeds Options.Limits.
	ErrLimit = errors.New("limit exceeded")
	// ErrPlatform: an index has no manifest for the platform, or the config names another one.
	ErrPlatform = errors.New("platform not available")
	// ErrUnsupported: a layer media type this package cannot unpack (foreign layers, or
	// encrypted layers without Options.KeyProvider).
	ErrUnsupported = errors.New("unsupported content")
	// ErrDecrypt: an encrypted layer's key could not be obtained or opened (no wrapped key for
	// the provider, a malformed annotation, a KBS refusal, a wrong key-encryption key), or
	// its ciphertext fails ocicrypt's HMAC.
	ErrDecrypt = errors.New("layer decryption failed")
	// ErrOptions: the Options are inconsistent (no destination, two destinations, ...).
	ErrOptions = errors.New("invalid options")
)

// ggcrMismatch reports whether err is one of go-containerregistry's content checks (digest
// or size of a manifest or blob against what was asked for), which have no error type.
func ggcrMismatch(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"does not match requested digest", "does not match expected size", "error verifying"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Defaults applied to zero Limits fields.
const (
	DefaultMaxManifestBytes = 4 << 20  // 4 MiB: manifests and indexes
	DefaultMaxConfigBytes   = 8 << 20  // 8 MiB: image configs (history can be long)
	DefaultMaxLayers        = 128      // OCI images rarely exceed ~60 layers
	DefaultMaxUnpackedBytes = 16 << 30 // 16 GiB of tar stream across all layers
)

// Options controls one Pull. The zero value is not usable: set Dest or CacheDir.
type Options struct {
	// Digest is the expected digest of what Ref resolves to (an index or an image manifest),
	// e.g. "sha256:...". Required when Ref names only a tag; when Ref carries its own digest
	// the two must be equal. This is the pin: nothing but the pinned content is unpacked.
	Digest string

	// Platform selects the image from a multi-platform index. Nil means linux/amd64. When the
	// pinned digest is an image manifest, its config's os/architecture (if set) must match.
	Platform *v1.Platform

	// InsecureRegistries lists registries ("host" or "host:port", as in the reference) that
	// may be reached over plain HTTP, e.g. a test registry on loopback. Plain HTTP to any
	// other host is refused, including on loopback and private addresses (where
	// go-containerregistry would otherwise fall back to HTTP) and on redirects.
	InsecureRegistries []string

	// Auth authenticates to the registry. Nil means anonymous.
	Auth authn.Authenticator

	// Transport carries the registry traffic. Nil means go-containerregistry's default
	// transport. It is always wrapped by the plain-HTTP and manifest-size checks.
	Transport http.RoundTripper

	// Limits bound what a registry can make the guest read and write.
	Limits Limits

	// Dest is the directory the root filesystem is unpacked into. It must not exist or be an
	// empty directory; it appears only once the pull has fully succeeded. Exactly one of Dest
	// and CacheDir must be set.
	Dest string

	// CacheDir is a content cache shared by all pulls (see the package doc for its layout).
	// With it, Image.RootFS is a shared, read-only tree: callers mount an overlay on it and
	// never write into it.
	CacheDir string

	// SealCache makes each cache entry a read-only mount of itself as soon as it is
	// committed, and reuses an entry only while it is one: the tree is verified once, as it
	// is unpacked, and nothing in the guest can change it afterwards, so a hit needs no second
	// verification. An entry found unsealed is removed and pulled again. It needs
	// CAP_SYS_ADMIN; the agent sets it.
	SealCache bool

	// KeyProvider unwraps the keys of encrypted layers (ocicrypt "+encrypted" media types),
	// e.g. NewKBSKeyProvider(hub) with an agent/cdh.Hub. Nil refuses encrypted layers with
	// ErrUnsupported. Decrypted content is unpacked like any other: Dest and CacheDir must
	// be guest-private.
	KeyProvider KeyProvider

	// Verifier checks the image against the image security policy (agent/imagesig) before
	// anything of it is fetched, on every Pull, a cache hit too (the cache is keyed by
	// digest, and another reference to the same digest may fall under another rule). Nil
	// accepts every image.
	Verifier Verifier

	// NoSameOwner unpacks files as the calling user instead of the owners recorded in the
	// layers (for unprivileged tests; the agent runs as root and keeps the owners).
	NoSameOwner bool
}

// Verifier checks an image before Pull fetches it: ref is the reference as parsed, pin the
// pinned digest, opts reach the registry through the pull's guarded transport. An error
// refuses the image; Pull returns it wrapped, having fetched nothing.
type Verifier interface {
	VerifyImage(ctx context.Context, ref name.Reference, pin v1.Hash, opts ...remote.Option) error
}

// Limits bounds one pull. A zero field takes its Default* value; a negative one disables the
// check (for tests only).
type Limits struct {
	MaxManifestBytes int64 // size of each manifest or index
	MaxConfigBytes   int64 // size of the image config
	MaxLayers        int   // number of layers in the image
	MaxUnpackedBytes int64 // uncompressed tar bytes across all layers
}

// withDefaults fills zero fields with the defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxManifestBytes == 0 {
		l.MaxManifestBytes = DefaultMaxManifestBytes
	}
	if l.MaxConfigBytes == 0 {
		l.MaxConfigBytes = DefaultMaxConfigBytes
	}
	if l.MaxLayers == 0 {
		l.MaxLayers = DefaultMaxLayers
	}
	if l.MaxUnpackedBytes == 0 {
		l.MaxUnpackedBytes = DefaultMaxUnpackedBytes
	}
	return l
}

// exceeds reports whether n is over limit max (a negative max never is).
func exceeds[T int | int64](n, max T) bool { return max >= 0 && n > max }

// platform returns the requested platform, linux/amd64 by default.
func (o *Options) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return v1.Platform{OS: "linux", Architecture: "amd64"}
}

// validate checks the options that do not depend on the reference.
func (o *Options) validate() error {
	if (o.Dest == "") == (o.CacheDir == "") {
		return fmt.Errorf("set exactly one of Dest and CacheDir: %w", ErrOptions)
	}
	p := o.platform()
	if p.OS == "" || p.Architecture == "" {
		return fmt.Errorf("platform %q needs an OS and an architecture: %w", p.String(), ErrOptions)
	}
	return nil
}

// insecure reports whether host (host[:port]) may be reached over plain HTTP.
func (o *Options) insecure(host string) bool {
	for _, h := range o.InsecureRegistries {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}
