package imagepull

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Image is the result of a successful Pull.
type Image struct {
	// Ref is the reference as given to Pull.
	Ref string `json:"ref"`
	// Digest is the pinned digest Ref resolved to: an index or an image manifest.
	Digest v1.Hash `json:"digest"`
	// ManifestDigest is the image manifest unpacked (equal to Digest unless it is an index).
	ManifestDigest v1.Hash `json:"manifestDigest"`
	// ConfigDigest is the digest of the image config.
	ConfigDigest v1.Hash `json:"configDigest"`
	// Platform is the platform the image was selected for.
	Platform v1.Platform `json:"platform"`
	// Layers are the layers applied, bottom first.
	Layers []Layer `json:"layers"`
	// Config is the image's runtime config: Entrypoint, Cmd, Env, User, WorkingDir, ...
	Config v1.Config `json:"config"`
	// RootFS is the unpacked tree: Options.Dest, or a shared read-only cache directory.
	RootFS string `json:"-"`
	// Cached reports that the image came from Options.CacheDir without a registry request.
	Cached bool `json:"-"`
}

// Layer describes one applied layer.
type Layer struct {
	Digest    v1.Hash `json:"digest"`    // compressed blob, as in the manifest
	DiffID    v1.Hash `json:"diffID"`    // uncompressed tar, as in the config's rootfs.diff_ids
	Size      int64   `json:"size"`      // compressed bytes
	MediaType string  `json:"mediaType"` // as in the manifest
	// Encrypted reports a layer that was decrypted (ocicrypt "+encrypted" media type):
	// Digest is then the encrypted blob's, DiffID the decrypted tar's.
	Encrypted bool `json:"encrypted,omitempty"`

	annotations map[string]string // the manifest descriptor's: the wrapped layer keys
}

// Pull fetches the image ref names, pinned to a digest (by ref itself, name@sha256:..., or
// by opts.Digest), verifies every manifest, config and layer against that pin, and unpacks
// it into opts.Dest or opts.CacheDir. On error nothing is left behind.
func Pull(ctx context.Context, ref string, opts Options) (*Image, error) {
	img, err := pull(ctx, ref, &opts)
	if err != nil {
		return nil, fmt.Errorf("imagepull: pull %s: %w", ref, err)
	}
	return img, nil
}

func pull(ctx context.Context, ref string, o *Options) (*Image, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	r, pin, err := parseRef(ref, o)
	if err != nil {
		return nil, err
	}
	if o.Verifier != nil {
		ropts, _ := o.remoteOptions(ctx, o.platform())
		if err := o.Verifier.VerifyImage(ctx, r, pin, ropts...); err != nil {
			return nil, err
		}
	}
	plt := o.platform()
	if o.Dest != "" {
		return pullToDest(ctx, ref, r, pin, plt, o)
	}
	e := newCacheEntry(o.CacheDir, pin, plt)
	e.seal = o.SealCache
	if img, err := e.load(); img != nil || err != nil {
		return img, err
	}
	unlock, err := e.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if img, err := e.load(); img != nil || err != nil {
		return img, err // another pull finished it while we waited
	}
	if err := e.discardUnsealed(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	rootfs, err := e.stage()
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer os.RemoveAll(e.staging()) // a no-op once committed
	img, err := fetch(ctx, r, pin, plt, rootfs, o)
	if err != nil {
		return nil, err
	}
	img.Ref = ref
	if err := e.commit(img); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if img, err = e.load(); err != nil {
		return nil, err
	}
	img.Cached = false
	return img, nil
}

// pullToDest unpacks into a staging directory next to o.Dest and renames it into place.
func pullToDest(ctx context.Context, ref string, r name.Reference, pin v1.Hash, plt v1.Platform, o *Options) (*Image, error) {
	staging, err := stageDest(o.Dest)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging) // a no-op once renamed
	img, err := fetch(ctx, r, pin, plt, staging, o)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(staging, o.Dest); err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	img.Ref, img.RootFS = ref, o.Dest
	return img, nil
}

// remoteOptions are the go-containerregistry options of a pull's registry requests, through
// the guard it returns.
func (o *Options) remoteOptions(ctx context.Context, plt v1.Platform) ([]remote.Option, *guard) {
	g := &guard{inner: o.Transport, opts: o, maxManifest: o.Limits.withDefaults().MaxManifestBytes}
	if g.inner == nil {
		g.inner = remote.DefaultTransport
	}
	auth := o.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	return []remote.Option{
		remote.WithContext(ctx), remote.WithTransport(g), remote.WithAuth(auth),
		remote.WithPlatform(plt), remote.WithUserAgent("veil-agent"),
	}, g
}

// parseRef parses ref and works out the pinned digest. It needs no network.
func parseRef(ref string, o *Options) (name.Reference, v1.Hash, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	if o.insecure(r.Context().RegistryStr()) {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, v1.Hash{}, err
		}
	}
	var pin v1.Hash
	if d, ok := r.(name.Digest); ok {
		if pin, err = v1.NewHash(d.DigestStr()); err != nil {
			return nil, v1.Hash{}, err
		}
	}
	if o.Digest != "" {
		want, err := v1.NewHash(o.Digest)
		if err != nil {
			return nil, v1.Hash{}, fmt.Errorf("Options.Digest: %w", err)
		}
		if pin != (v1.Hash{}) && pin != want {
			return nil, v1.Hash{}, fmt.Errorf("reference pins %s but Options.Digest is %s: %w", pin, want, ErrDigestMismatch)
		}
		pin = want
	}
	if pin == (v1.Hash{}) {
		return nil, v1.Hash{}, fmt.Errorf("%q names a tag and no digest is pinned (use name@sha256:... or Options.Digest): %w", ref, ErrNotPinned)
	}
	if pin.Algorithm != "sha256" {
		return nil, v1.Hash{}, fmt.Errorf("pinned digest %s: only sha256 is supported: %w", pin, ErrUnsupported)
	}
	return r, pin, nil
}

// fetch resolves r, checks the pin, reads and checks the config, and applies every layer
// into rootfs. rootfs is a staging directory the caller removes on error.
func fetch(ctx context.Context, r name.Reference, pin v1.Hash, plt v1.Platform, rootfs string, o *Options) (*Image, error) {
	lim := o.Limits.withDefaults()
	ropts, g := o.remoteOptions(ctx, plt)
	img, res, err := resolve(r, pin, plt, lim, ropts)
	if err != nil {
		if lerr := g.limitErr(); lerr != nil && !errors.Is(err, ErrLimit) {
			err = fmt.Errorf("%w (%v)", lerr, err)
		}
		return nil, err
	}
	if err := checkConfig(img, res, plt, lim); err != nil {
		return nil, err
	}
	u := &unpacker{root: rootfs, registry: r.Context().RegistryStr(), max: lim.MaxUnpackedBytes, left: lim.MaxUnpackedBytes, noSameOwner: o.NoSameOwner, keys: o.KeyProvider}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("manifest %s: layers: %w", res.ManifestDigest, err)
	}
	for i, l := range layers {
		if err := u.apply(ctx, l, i, &res.Layers[i]); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", res.ManifestDigest, err)
		}
	}
	return res, nil
}
