package imagepull_test

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/veil-runtime/veil/agent/imagepull"
)

// testRegistry is go-containerregistry's in-memory registry on a loopback port, with a log
// of the requests it served and an optional tamper hook.
type testRegistry struct {
	host  string       // 127.0.0.1:port
	inner http.Handler // the registry itself, for tamper hooks

	mu     sync.Mutex
	reqs   []string // "GET /v2/..."
	tamper func(w http.ResponseWriter, r *http.Request) bool
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.inner = reg
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
		tamper := r.tamper
		r.mu.Unlock()
		if tamper != nil && tamper(w, req) {
			return
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// requests returns the requests served since the last reset whose path contains substr.
func (r *testRegistry) requests(substr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.reqs {
		if strings.Contains(q, substr) {
			out = append(out, q)
		}
	}
	return out
}

func (r *testRegistry) reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

// setTamper installs f: when it returns true, it has answered the request itself.
func (r *testRegistry) setTamper(f func(w http.ResponseWriter, r *http.Request) bool) {
	r.mu.Lock()
	r.tamper = f
	r.mu.Unlock()
}

// push stores img as repo:latest; it returns the tag reference and the digest.
func (r *testRegistry) push(t testing.TB, repo string, img v1.Image) (tag string, digest v1.Hash) {
	t.Helper()
	tag = r.host + "/" + repo + ":latest"
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r.reset()
	return tag, d
}

// pushIndex stores an index of the given platform images as repo:latest.
func (r *testRegistry) pushIndex(t testing.TB, repo string, imgs map[string]v1.Image) (tag string, digest v1.Hash) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	for plat, img := range imgs {
		p, err := v1.ParsePlatform(plat)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	tag = r.host + "/" + repo + ":latest"
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r.reset()
	return tag, d
}

// opts returns Options that allow plain HTTP to this registry only.
func (r *testRegistry) opts() imagepull.Options {
	return imagepull.Options{InsecureRegistries: []string{r.host}, NoSameOwner: os.Geteuid() != 0}
}

// digestRef turns "host/repo:tag" into "host/repo@digest".
func digestRef(tag string, d v1.Hash) string {
	return tag[:strings.LastIndex(tag, ":")] + "@" + d.String()
}

// entry is one tar entry of a test layer.
type entry struct {
	name string
	body string
	typ  byte // tar.TypeReg when zero
	link string
	mode int64
}

func file(name, body string) entry      { return entry{name: name, body: body} }
func dir(name string) entry             { return entry{name: name, typ: tar.TypeDir} }
func symlink(name, target string) entry { return entry{name: name, typ: tar.TypeSymlink, link: target} }

// tarBytes writes entries as an uncompressed tar stream.
func tarBytes(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer makes a gzip layer of entries.
func layer(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image stacks layers (bottom first) under cfg, for linux/<arch> when arch is set.
func image(t testing.TB, cfg v1.Config, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	if arch != "" {
		cf.OS, cf.Architecture = "linux", arch
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// tree lists root as "path" for directories, "path=body" for files and "path->target" for
// symlinks, sorted.
func tree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, rel+"->"+target)
		case fi.IsDir():
			out = append(out, rel+"/")
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, rel+"="+string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// entries lists the names in dir (nil if it does not exist).
func entries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
