package genpolicy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Image is what genpolicy needs to know of an image.
type Image struct {
	// Digest is the digest of the image manifest for the platform: "sha256:<hex>".
	Digest string
	// Entrypoint, Cmd, Env, WorkingDir and User come from the image config.
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	// Passwd and Group are the contents of the image's /etc/passwd and /etc/group, as its
	// flattened root file system has them (links followed); nil when it has none. Genpolicy
	// resolves the container's user and supplementary groups in them, as containerd's CRI
	// does in the container's root file system.
	Passwd, Group []byte
	// UserFilesUnknown, when not "", says why Passwd and Group could not be read (a layer
	// is encrypted); they are nil then. Genpolicy pins only what the pod says of the user
	// and warns (Result.Warnings).
	UserFilesUnknown string

	// emptyRoot: containerd sees an empty root file system for this image (Options.VeilSnapshotter),
	// so Passwd and Group are nil whatever the image has.
	emptyRoot bool
}

// Resolver finds an image by its reference. The registry is reached only through it, so
// that tests and offline machines can supply their own.
type Resolver interface {
	// Resolve returns the image ref names, for the resolver's platform.
	Resolve(ctx context.Context, ref string) (*Image, error)
}

// RegistryResolver resolves references against their registries with go-containerregistry.
type RegistryResolver struct {
	// Platform picks the manifest of a multi-platform image; zero means linux/amd64.
	Platform v1.Platform
	// PlainHTTPLoopback allows plain HTTP to registries on loopback addresses (a local test
	// registry). Plain HTTP to any other host is always refused, even where
	// go-containerregistry would use it (private addresses, .local names).
	PlainHTTPLoopback bool
	// Keychain supplies credentials; nil means the Docker config of the user.
	Keychain authn.Keychain
	// Transport is the HTTP transport; nil means remote.DefaultTransport.
	Transport http.RoundTripper
}

// Resolve fetches the manifest and config of ref for the platform, and reads /etc/passwd
// and /etc/group from its layers (from the top layer down, until both are settled; see
// Image.Passwd). When ref names an index (by tag or by digest), the digest returned is that
// of the platform's manifest: the one the agent runs.
func (r *RegistryResolver) Resolve(ctx context.Context, ref string) (*Image, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	platform := r.Platform
	if platform.OS == "" {
		platform = v1.Platform{OS: "linux", Architecture: "amd64"}
	}
	keychain := r.Keychain
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	base := r.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	img, err := remote.Image(parsed,
		remote.WithContext(ctx),
		remote.WithPlatform(platform),
		remote.WithAuthFromKeychain(keychain),
		remote.WithTransport(&schemeGuard{base: base, loopbackHTTP: r.PlainHTTPLoopback}),
	)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image %q: manifest digest: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %q: config: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image %q: layers: %w", ref, err)
	}
	files, err := readUserFiles(layers)
	if err != nil {
		return nil, fmt.Errorf("image %q: read /etc/passwd and /etc/group: %w", ref, err)
	}
	return &Image{
		Digest:           digest.String(),
		Entrypoint:       cf.Config.Entrypoint,
		Cmd:              cf.Config.Cmd,
		Env:              cf.Config.Env,
		WorkingDir:       cf.Config.WorkingDir,
		User:             cf.Config.User,
		Passwd:           files.passwd,
		Group:            files.group,
		UserFilesUnknown: files.unknown,
	}, nil
}

// schemeGuard refuses plain HTTP except to loopback hosts when allowed: a digest fetched
// over plain HTTP could be anyone's.
type schemeGuard struct {
	base         http.RoundTripper
	loopbackHTTP bool
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !(g.loopbackHTTP && isLoopback(req.URL.Hostname())) {
		return nil, fmt.Errorf("plain HTTP to %s refused: only loopback registries may use it, with PlainHTTPLoopback (--plain-http-loopback)", req.URL.Host)
	}
	return g.base.RoundTrip(req)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
