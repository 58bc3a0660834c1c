package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The platform of every image.
const (
	OS           = "linux"
	Architecture = "amd64"
)

// GzipLevel is the compression level of the layer. Go's compress/gzip gives the same bytes
// for the same input and level; a Go release that changes its compressor may change them.
const GzipLevel = gzip.BestCompression

// DefaultPath is the PATH put first in the config's Env when Spec.Env sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// CreatedBy is the history entry's created_by.
const CreatedBy = "veil-ociimage"

// Image is a built image.
type Image struct {
	// Image is the image, for go-containerregistry (remote.Write, layout, ...).
	Image v1.Image
	// Name is Spec.Name, normalized (NormalizeName).
	Name string
	// Digest is the manifest's digest: what a registry and `ctr images ls` show.
	Digest v1.Hash
	// Created is the time stamped on the layer's entries and the config.
	Created time.Time
}

// Build makes the image of s: it reads every source file (refusing missing and non-regular
// ones, and paths that climb out with ".."), writes the layer and the config. Every problem
// in s is reported together.
func Build(s Spec) (*Image, error) {
	name, err := NormalizeName(s.Name)
	if err != nil {
		return nil, err
	}
	entries, err := s.collect()
	if err != nil {
		return nil, err
	}
	created := s.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC().Truncate(time.Second)
	gz, err := layerBytes(entries, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: CreatedBy}})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = OS, Architecture, v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: s.Entrypoint, Cmd: s.Cmd, Env: withPath(s.Env), User: s.User,
		WorkingDir: s.WorkingDir, Labels: s.Labels,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	return &Image{Image: img, Name: name, Digest: digest, Created: created}, nil
}

// withPath returns env with DefaultPath first when it sets no PATH.
func withPath(env []string) []string {
	if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		return env
	}
	return append([]string{DefaultPath}, env...)
}

// layerBytes writes the entries (sorted, owned by 0:0, stamped with created) as a gzip tar.
func layerBytes(entries []entry, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, GzipLevel)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.path, Mode: tarMode(e.mode), ModTime: created, Typeflag: tar.TypeReg, Size: int64(len(e.data))}
		if e.dir {
			hdr.Name, hdr.Typeflag, hdr.Size = e.path+"/", tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.path, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// tarMode converts permission bits and setuid, setgid, sticky to tar's numeric mode.
func tarMode(m fs.FileMode) int64 {
	v := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// checksums returns the SHA256SUMS of the regular files beneath dir, in sha256sum's format
// ("<hex>  <path relative to dir>"), sorted by path.
func checksums(dir string, byPath map[string]*entry) []byte {
	var lines []string
	for p, e := range byPath {
		rel, ok := strings.CutPrefix(p, dir+"/")
		if !ok || e.dir {
			continue
		}
		sum := sha256.Sum256(e.data)
		lines = append(lines, hex.EncodeToString(sum[:])+"  "+rel+"\n")
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[64:], b[64:]) })
	return []byte(strings.Join(lines, ""))
}
