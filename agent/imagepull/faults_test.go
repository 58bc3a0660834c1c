package imagepull_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/imagepull"
)

// restartableRegistry is go-containerregistry's registry (in memory: its blobs outlive a
// restart, like a registry's storage) served on a loopback address that stays the same when
// the server is killed and started again.
type restartableRegistry struct {
	t    *testing.T
	addr string       // 127.0.0.1:port, the same across restarts
	reg  http.Handler // the registry; its storage survives kill and start

	mu   sync.Mutex
	ln   net.Listener
	srv  *http.Server
	kill func(w http.ResponseWriter, r *http.Request) bool // answers (and dies) itself when true
}

func newRestartableRegistry(t *testing.T) *restartableRegistry {
	t.Helper()
	r := &restartableRegistry{t: t, reg: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	r.start("127.0.0.1:0")
	t.Cleanup(r.stop)
	return r
}

// start serves the registry on addr (the registry's own address after the first start).
func (r *restartableRegistry) start(addr string) {
	r.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatalf("registry: listen on %s again: %v", addr, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.mu.Lock()
			kill := r.kill
			r.mu.Unlock()
			if kill != nil && kill(w, req) {
				return
			}
			r.reg.ServeHTTP(w, req)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	r.mu.Lock()
	r.addr, r.ln, r.srv = ln.Addr().String(), ln, srv
	r.mu.Unlock()
	go srv.Serve(ln)
}

// stop kills the server: no new connection is accepted and every open one is closed.
func (r *restartableRegistry) stop() {
	r.mu.Lock()
	ln, srv := r.ln, r.srv
	r.mu.Unlock()
	ln.Close()
	srv.Close()
}

// dieDuringBlob makes the registry die in the middle of serving blob d: it sends the
// headers (the blob's full Content-Length) and the first n bytes of body, then stops
// listening and drops the connection, as a registry process that is killed would.
func (r *restartableRegistry) dieDuringBlob(d v1.Hash, body []byte, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kill = func(w http.ResponseWriter, req *http.Request) bool {
		if req.Method != http.MethodGet || !strings.HasSuffix(req.URL.Path, "/blobs/"+d.String()) {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusOK)
		w.Write(body[:n])
		w.(http.Flusher).Flush()
		r.mu.Lock()
		r.ln.Close() // no restart can race with this: start listens anew
		r.kill = nil
		r.mu.Unlock()
		panic(http.ErrAbortHandler) // net/http closes the connection without a clean end
	}
}

// bigLayerImage is a small lower layer and an upper layer of size bytes of random (so
// incompressible) data in /big, plus the compressed bytes and digest of the upper layer.
func bigLayerImage(t *testing.T, size int) (img v1.Image, upper v1.Hash, blob []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	img = image(t, testConfig, "amd64",
		layer(t, dir("etc"), file("etc/hostname", "lower")),
		layer(t, file("big", string(data))))
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if upper, err = layers[1].Digest(); err != nil {
		t.Fatal(err)
	}
	return img, upper, readAll(t, layers[1].Compressed)
}

// noLeftovers fails when the cache under dir holds anything of a failed pull: an image
// entry, a staging directory, or any regular file but the entries' lock files.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"images/sha256", "tmp"} {
		if e := entries(t, filepath.Join(dir, sub)); len(e) != 0 {
			t.Errorf("cache %s: left behind %q", sub, e)
		}
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !(filepath.Base(filepath.Dir(p)) == "locks" && strings.HasSuffix(p, ".lock")) {
			t.Errorf("cache: left behind %s (%d bytes)", p, fi.Size())
		}
		return nil
	})
}

// TestRegistryKilledMidLayer (issue 12): the registry dies halfway through the blob of the
// image's large layer. The pull must fail with an error that names that layer (index and
// digest) and the registry, and leave nothing in the cache but its lock file: no entry, no
// staging tree, no partial file. Once the registry is back on the same address, the same
// pull succeeds and unpacks the whole image.
func TestRegistryKilledMidLayer(t *testing.T) {
	r := newRestartableRegistry(t)
	img, upper, blob := bigLayerImage(t, 4<<20)
	ref := r.push(t, img)
	o := imagepull.Options{InsecureRegistries: []string{r.addr}, CacheDir: t.TempDir()}

	r.dieDuringBlob(upper, blob, len(blob)/2)
	start := time.Now()
	_, err := imagepull.Pull(context.Background(), ref, o)
	t.Logf("pull with the registry killed: %v after %v", err, time.Since(start))
	if err == nil {
		t.Fatal("the pull succeeded although the registry died in the middle of layer 1")
	}
	for _, want := range []string{"layer 1 (" + upper.String() + ")", "registry " + r.addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if errors.Is(err, imagepull.ErrDigestMismatch) {
		t.Errorf("a dropped connection is reported as tampering: %v", err)
	}
	noLeftovers(t, o.CacheDir)

	r.start(r.addr)
	got, err := imagepull.Pull(context.Background(), ref, o)
	if err != nil {
		t.Fatalf("pull once the registry is back: %v", err)
	}
	if got.Cached || len(got.Layers) != 2 {
		t.Errorf("retry: cached %v, %d layers", got.Cached, len(got.Layers))
	}
	if fi, err := os.Stat(filepath.Join(got.RootFS, "big")); err != nil || fi.Size() != 4<<20 {
		t.Errorf("retry: /big: %v, %v", fi, err)
	}
	if e := entries(t, filepath.Join(o.CacheDir, "tmp")); len(e) != 0 {
		t.Errorf("staging left after the retry: %q", e)
	}
}

// push stores img in the registry and returns its name@digest reference.
func (r *restartableRegistry) push(t *testing.T, img v1.Image) string {
	t.Helper()
	tr := &testRegistry{host: r.addr}
	tag, d := tr.push(t, "app", img)
	return digestRef(tag, d)
}

// TestDiskFullCache (issue 12): the guest-pull cache lies on a 4 MiB tmpfs and the image's
// layer unpacks to 6 MiB. The pull must fail with ENOSPC (errors.Is holds) and name the
// layer, leave no entry, staging tree or partial file, and the full disk must not break the
// cache: a small image pulls into it afterwards.
func TestDiskFullCache(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestDiskFullCache mounts a tmpfs: run it as root (sudo go test ./agent/imagepull)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount a 4 MiB tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	reg := newRegistry(t)
	big, upper, _ := bigLayerImage(t, 6<<20)
	bigTag, bigDigest := reg.push(t, "big", big)
	small, smallDigest := reg.push(t, "small", layeredImage(t))
	o := reg.opts()
	o.CacheDir = dir

	start := time.Now()
	_, err := imagepull.Pull(context.Background(), digestRef(bigTag, bigDigest), o)
	t.Logf("pull on a full disk: %v after %v", err, time.Since(start))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v, want ENOSPC", err)
	}
	for _, want := range []string{"layer 1 (" + upper.String() + ")", "no space left on device", dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	noLeftovers(t, dir)

	got, err := imagepull.Pull(context.Background(), digestRef(small, smallDigest), o)
	if err != nil {
		t.Fatalf("a small image after the full disk: %v", err)
	}
	if tr := tree(t, got.RootFS); !slices.Equal(tr, layeredTree) {
		t.Errorf("tree: %q", tr)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if used := (st.Blocks - st.Bfree) * uint64(st.Bsize); used > 1<<20 {
		t.Errorf("%d bytes in use in the cache after the failed pull and a small one", used)
	}
}
