package imagepull

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// resolve fetches what r names, checks it hashes to pin before anything else is read, and
// returns the image for plt (selected from an index if the pin is one).
func resolve(r name.Reference, pin v1.Hash, plt v1.Platform, lim Limits, ropts []remote.Option) (v1.Image, *Image, error) {
	desc, err := remote.Get(r, ropts...)
	if ggcrMismatch(err) { // fetched by digest: go-containerregistry checked it first
		return nil, nil, fmt.Errorf("manifest: %w: %w", ErrDigestMismatch, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fetch manifest: %w", err)
	}
	if err := checkDigest("manifest", pin, desc.Manifest); err != nil {
		return nil, nil, err
	}
	res := &Image{Digest: pin, ManifestDigest: pin, Platform: plt}
	switch {
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, nil, fmt.Errorf("manifest %s: %w", pin, err)
		}
		return img, res, nil
	case desc.MediaType.IsIndex():
		img, d, err := fromIndex(desc, pin, plt, lim)
		if err != nil {
			return nil, nil, err
		}
		res.ManifestDigest = d
		return img, res, nil
	default:
		return nil, nil, fmt.Errorf("%s has media type %q, neither an image nor an index: %w", pin, desc.MediaType, ErrUnsupported)
	}
}

// fromIndex picks the manifest for plt from the (already verified) index and fetches it by
// digest, checking that digest again.
func fromIndex(desc *remote.Descriptor, pin v1.Hash, plt v1.Platform, lim Limits) (v1.Image, v1.Hash, error) {
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("index %s: %w", pin, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("index %s: %w", pin, err)
	}
	child, err := selectPlatform(im, plt)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("index %s: %w", pin, err)
	}
	if exceeds(child.Size, lim.MaxManifestBytes) {
		return nil, v1.Hash{}, fmt.Errorf("index %s: manifest %s is %d bytes, over the %d-byte limit: %w",
			pin, child.Digest, child.Size, lim.MaxManifestBytes, ErrLimit)
	}
	img, err := idx.Image(child.Digest)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("index %s: manifest %s: %w", pin, child.Digest, err)
	}
	raw, err := img.RawManifest()
	if ggcrMismatch(err) {
		return nil, v1.Hash{}, fmt.Errorf("index %s: manifest %s: %w: %w", pin, child.Digest, ErrDigestMismatch, err)
	}
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("index %s: fetch manifest %s: %w", pin, child.Digest, err)
	}
	if err := checkDigest("manifest (from index "+pin.String()+")", child.Digest, raw); err != nil {
		return nil, v1.Hash{}, err
	}
	return img, child.Digest, nil
}

// selectPlatform returns the first image manifest of im for plt. A requested variant must
// match; without one, any variant does.
func selectPlatform(im *v1.IndexManifest, plt v1.Platform) (v1.Descriptor, error) {
	var have []string
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() || d.Platform == nil {
			continue
		}
		p := d.Platform
		have = append(have, p.String())
		if p.OS == plt.OS && p.Architecture == plt.Architecture && (plt.Variant == "" || p.Variant == plt.Variant) {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("no manifest for %s (index has: %s): %w", plt.String(), strings.Join(have, ", "), ErrPlatform)
}

// checkConfig reads the config (bounded, digest checked), checks it against the manifest and
// the platform, and fills res.Config and res.Layers.
func checkConfig(img v1.Image, res *Image, plt v1.Platform, lim Limits) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("manifest %s: %w", res.ManifestDigest, err)
	}
	where := "manifest " + res.ManifestDigest.String()
	if exceeds(len(m.Layers), lim.MaxLayers) {
		return fmt.Errorf("%s: %d layers, over the limit of %d: %w", where, len(m.Layers), lim.MaxLayers, ErrLimit)
	}
	if exceeds(m.Config.Size, lim.MaxConfigBytes) {
		return fmt.Errorf("%s: config %s is %d bytes, over the %d-byte limit: %w",
			where, m.Config.Digest, m.Config.Size, lim.MaxConfigBytes, ErrLimit)
	}
	raw, err := img.RawConfigFile()
	if ggcrMismatch(err) {
		return fmt.Errorf("%s: config %s: %w: %w", where, m.Config.Digest, ErrDigestMismatch, err)
	}
	if err != nil {
		return fmt.Errorf("%s: fetch config %s: %w", where, m.Config.Digest, err)
	}
	if err := checkDigest(where+": config", m.Config.Digest, raw); err != nil {
		return err
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%s: config %s: %w", where, m.Config.Digest, err)
	}
	if (cf.OS != "" && cf.OS != plt.OS) || (cf.Architecture != "" && cf.Architecture != plt.Architecture) {
		return fmt.Errorf("%s: config is for %s/%s, want %s: %w", where, cf.OS, cf.Architecture, plt.String(), ErrPlatform)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("%s: %d layers but config %s lists %d diff_ids: %w",
			where, len(m.Layers), m.Config.Digest, len(cf.RootFS.DiffIDs), ErrDigestMismatch)
	}
	res.ConfigDigest, res.Config = m.Config.Digest, cf.Config
	res.Layers = make([]Layer, len(m.Layers))
	for i, l := range m.Layers {
		res.Layers[i] = Layer{Digest: l.Digest, DiffID: cf.RootFS.DiffIDs[i], Size: l.Size, MediaType: string(l.MediaType),
			Encrypted: isEncrypted(l.MediaType), annotations: l.Annotations}
	}
	return nil
}

// checkDigest checks that b hashes to want (sha256 only).
func checkDigest(what string, want v1.Hash, b []byte) error {
	got, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if want.Algorithm != "sha256" {
		return fmt.Errorf("%s: digest %s: only sha256 is supported: %w", what, want, ErrUnsupported)
	}
	if got != want {
		return fmt.Errorf("%s: want %s, got %s: %w", what, want, got, ErrDigestMismatch)
	}
	return nil
}
