package imagepull_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/veil-runtime/veil/agent/imagepull"
)

// serveBlob answers GETs of blob d with body(orig), without a Content-Length if chunked.
func serveBlob(d v1.Hash, body func([]byte) []byte, orig []byte, chunked bool) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
			return false
		}
		if chunked {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
		}
		w.Write(body(orig))
		return true
	}
}

func TestTamperedLayer(t *testing.T) {
	reg := newRegistry(t)
	img := layeredImage(t)
	tag, d := reg.push(t, "app", img)
	layers, _ := img.Layers()
	upper, _ := layers[1].Digest()
	blob := readAll(t, layers[1].Compressed)
	lower := readAll(t, layers[0].Compressed)

	tests := []struct {
		name string
		body func([]byte) []byte
		ok   bool // chunked only: the verifying reader stops at the declared size
	}{
		{"byte flipped", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0xff; return b }, false},
		{"other layer", func([]byte) []byte { return lower }, false},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }, false},
		{"trailing data", func(b []byte) []byte { return append(bytes.Clone(b), "more"...) }, true},
	}
	for _, tt := range tests {
		for _, chunked := range []bool{false, true} {
			for _, cache := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/chunked=%v/cache=%v", tt.name, chunked, cache), func(t *testing.T) {
					reg.setTamper(serveBlob(upper, tt.body, blob, chunked))
					defer reg.setTamper(nil)
					tamperedPull(t, reg, digestRef(tag, d), upper, cache, chunked && tt.ok)
				})
			}
		}
	}
}

// tamperedPull pulls ref and checks that layer 1 (digest upper) is refused and nothing is
// left behind, or, if wantOK, that the pull succeeds with the right tree.
func tamperedPull(t *testing.T, reg *testRegistry, ref string, upper v1.Hash, cache, wantOK bool) {
	parent := t.TempDir()
	o := reg.opts()
	if cache {
		o.CacheDir = parent
	} else {
		o.Dest = filepath.Join(parent, "rootfs")
	}
	img, err := imagepull.Pull(context.Background(), ref, o)
	if wantOK {
		if err != nil {
			t.Fatal(err)
		}
		if tr := tree(t, img.RootFS); !slices.Equal(tr, layeredTree) {
			t.Errorf("tree: %q", tr)
		}
		return
	}
	if !errors.Is(err, imagepull.ErrDigestMismatch) || !strings.Contains(err.Error(), "layer 1 ("+upper.String()+")") {
		t.Fatalf("err = %v, want a digest mismatch on layer 1", err)
	}
	if !cache {
		if e := entries(t, parent); len(e) != 0 {
			t.Errorf("left behind: %q", e)
		}
		return
	}
	if e := entries(t, filepath.Join(parent, "images")); len(e) != 0 {
		t.Errorf("cache entries left: %q", e)
	}
	if e := entries(t, filepath.Join(parent, "tmp")); len(e) != 0 {
		t.Errorf("staging left: %q", e)
	}
}

func readAll(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDiffIDMismatch(t *testing.T) {
	reg := newRegistry(t)
	img := layeredImage(t)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = cf.RootFS.DiffIDs[1] // a lie about layer 0's content
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	tag, d := reg.push(t, "lie", img)
	parent := t.TempDir()
	o := reg.opts()
	o.Dest = filepath.Join(parent, "rootfs")
	_, err = imagepull.Pull(context.Background(), digestRef(tag, d), o)
	if !errors.Is(err, imagepull.ErrDigestMismatch) || !strings.Contains(err.Error(), "layer 0") ||
		!strings.Contains(err.Error(), "diff_ids") {
		t.Fatalf("err = %v, want a diff_ids mismatch on layer 0", err)
	}
	if e := entries(t, parent); len(e) != 0 {
		t.Errorf("left behind: %q", e)
	}
}

// TestPathEscape: layers that try to write outside the destination, through "..", absolute
// names, absolute or climbing symlinks and hard links. Unpacking may fail or succeed, but
// nothing outside the destination may change.
func TestPathEscape(t *testing.T) {
	reg := newRegistry(t)
	for _, tt := range []struct {
		name    string
		entries func(outside string) []entry
	}{
		{"dotdot", func(string) []entry {
			return []entry{file("../escape", "x"), file("a/../../../escape2", "x"), file("/abs", "x")}
		}},
		{"absolute symlink dir", func(out string) []entry {
			return []entry{symlink("evil", out), file("evil/pwned", "x")}
		}},
		{"climbing symlink dir", func(string) []entry {
			return []entry{symlink("up", "../../../../.."), file("up/pwned", "x")}
		}},
		{"symlink then overwrite", func(out string) []entry {
			return []entry{symlink("f", filepath.Join(out, "secret")), file("f", "overwritten")}
		}},
		{"hardlink out", func(string) []entry {
			return []entry{{name: "hl", typ: tar.TypeLink, link: "../outside/secret"}, file("hl", "overwritten")}
		}},
		{"whiteout out", func(string) []entry {
			return []entry{file("../outside/.wh.secret", "")}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			os.Mkdir(outside, 0o755)
			os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600)
			tag, d := reg.push(t, "escape", image(t, v1.Config{}, "", layer(t, tt.entries(outside)...)))

			o := reg.opts()
			o.Dest = filepath.Join(parent, "rootfs")
			_, err := imagepull.Pull(context.Background(), digestRef(tag, d), o)
			t.Logf("pull: err=%v", err)
			if got := tree(t, outside); !slices.Equal(got, []string{"secret=secret"}) {
				t.Errorf("outside changed: %q", got)
			}
			want := []string{"outside"}
			if err == nil {
				want = []string{"outside", "rootfs"}
				t.Logf("rootfs: %q", tree(t, o.Dest))
			}
			if e := entries(t, parent); !slices.Equal(e, want) {
				t.Errorf("parent holds %q, want %q", e, want)
			}
		})
	}
}

func TestUnsupportedLayers(t *testing.T) {
	reg := newRegistry(t)
	for _, mt := range []types.MediaType{
		"application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
		types.DockerForeignLayer,
	} {
		img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer(t, file("x", "x")), MediaType: mt})
		if err != nil {
			t.Fatal(err)
		}
		tag, d := reg.push(t, "odd", img)
		o := reg.opts()
		o.Dest = filepath.Join(t.TempDir(), "rootfs")
		if _, err := imagepull.Pull(context.Background(), digestRef(tag, d), o); !errors.Is(err, imagepull.ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", mt, err)
		}
		if n := len(reg.requests("/blobs/")); n != 1 {
			t.Errorf("%s: %d blob requests, want only the config", mt, n)
		}
	}
}

func TestLimits(t *testing.T) {
	reg := newRegistry(t)
	tag, d := reg.push(t, "app", layeredImage(t))
	for _, tt := range []struct {
		name   string
		limits imagepull.Limits
		want   string
	}{
		{"layers", imagepull.Limits{MaxLayers: 1}, "2 layers, over the limit of 1"},
		{"config", imagepull.Limits{MaxConfigBytes: 100}, "over the 100-byte limit"},
		{"manifest", imagepull.Limits{MaxManifestBytes: 100}, "over the 100-byte limit"},
		{"unpacked", imagepull.Limits{MaxUnpackedBytes: 4096}, "MaxUnpackedBytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			o := reg.opts()
			o.Dest, o.Limits = filepath.Join(parent, "rootfs"), tt.limits
			_, err := imagepull.Pull(context.Background(), digestRef(tag, d), o)
			t.Logf("err: %v", err)
			if !errors.Is(err, imagepull.ErrLimit) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrLimit with %q", err, tt.want)
			}
			if e := entries(t, parent); len(e) != 0 {
				t.Errorf("left behind: %q", e)
			}
		})
	}
}

// TestTamperedManifestAndConfig: a registry serving another manifest for the pinned digest,
// or a corrupted config, is refused before any layer is read.
func TestTamperedManifestAndConfig(t *testing.T) {
	reg := newRegistry(t)
	img := layeredImage(t)
	tag, d := reg.push(t, "app", img)
	other := image(t, v1.Config{}, "amd64", layer(t, file("x", "x")))
	otherRaw, _ := other.RawManifest()
	mt, _ := img.MediaType()
	cd, _ := img.ConfigName()
	cfg, _ := img.RawConfigFile()

	for _, tt := range []struct {
		name   string
		tamper func(w http.ResponseWriter, r *http.Request) bool
		want   string
	}{
		{"manifest swapped", func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, "/manifests/"+d.String()) {
				return false
			}
			w.Header().Set("Content-Type", string(mt))
			w.Write(otherRaw)
			return true
		}, "manifest"},
		{"config corrupted", serveBlob(cd, func(b []byte) []byte {
			b = bytes.Clone(b)
			b[len(b)-2] ^= 1
			return b
		}, cfg, false), "config " + cd.String()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg.setTamper(tt.tamper)
			defer reg.setTamper(nil)
			reg.reset()
			parent := t.TempDir()
			o := reg.opts()
			o.Dest = filepath.Join(parent, "rootfs")
			_, err := imagepull.Pull(context.Background(), digestRef(tag, d), o)
			t.Logf("err: %v", err)
			if !errors.Is(err, imagepull.ErrDigestMismatch) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a digest mismatch on %s", err, tt.want)
			}
			for _, q := range reg.requests("/blobs/") {
				if !strings.HasSuffix(q, cd.String()) {
					t.Errorf("layer read before the refusal: %s", q)
				}
			}
			if e := entries(t, parent); len(e) != 0 {
				t.Errorf("left behind: %q", e)
			}
		})
	}
}

// TestManifestLimitChunked: the manifest limit holds without a Content-Length.
func TestManifestLimitChunked(t *testing.T) {
	reg := newRegistry(t)
	tag, d := reg.push(t, "app", layeredImage(t))
	reg.setTamper(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		rec := httptest.NewRecorder()
		reg.inner.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		w.(http.Flusher).Flush()
		w.Write(rec.Body.Bytes())
		return true
	})
	o := reg.opts()
	o.Dest, o.Limits.MaxManifestBytes = filepath.Join(t.TempDir(), "rootfs"), 100
	_, err := imagepull.Pull(context.Background(), digestRef(tag, d), o)
	if !errors.Is(err, imagepull.ErrLimit) || !strings.Contains(err.Error(), "over the 100-byte limit") {
		t.Fatalf("err = %v, want ErrLimit", err)
	}
	o.Limits.MaxManifestBytes = 0 // default: the same response is fine
	if _, err := imagepull.Pull(context.Background(), digestRef(tag, d), o); err != nil {
		t.Fatal(err)
	}
}
