package imagepull_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/internal/faultserver"
)

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
	r := faultserver.Start(t, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	img, upper, blob := bigLayerImage(t, 4<<20)
	tag, d := (&testRegistry{host: r.Addr()}).push(t, "app", img)
	ref := digestRef(tag, d)
	o := imagepull.Options{InsecureRegistries: []string{r.Addr()}, CacheDir: t.TempDir()}

	r.DieOn(func(req *http.Request) bool {
		return req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/blobs/"+upper.String())
	}, len(blob)/2)
	start := time.Now()
	_, err := imagepull.Pull(context.Background(), ref, o)
	t.Logf("pull with the registry killed: %v after %v", err, time.Since(start))
	if err == nil {
		t.Fatal("the pull succeeded although the registry died in the middle of layer 1")
	}
	for _, want := range []string{"layer 1 (" + upper.String() + ")", "registry " + r.Addr()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if errors.Is(err, imagepull.ErrDigestMismatch) {
		t.Errorf("a dropped connection is reported as tampering: %v", err)
	}
	noLeftovers(t, o.CacheDir)

	r.Restart(nil) // the same registry, its blobs kept
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

// TestDiskFullCache (issue 12): the guest-pull cache lies on a 4 MiB tmpfs and the image's
// layer unpacks to 6 MiB. The pull must fail with ENOSPC (errors.Is holds) and name the
// layer, stop fetching the layer at once (the rest of a large blob would only delay the
// error), leave no entry, staging tree or partial file, and the full disk must not break the
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
	blobRead := &bodyCounter{inner: http.DefaultTransport, path: "/blobs/" + upper.String()}
	o.Transport = blobRead

	start := time.Now()
	_, err := imagepull.Pull(context.Background(), digestRef(bigTag, bigDigest), o)
	t.Logf("pull on a full disk: %v after %v, %d bytes of the layer's blob read", err, time.Since(start), blobRead.n.Load())
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v, want ENOSPC", err)
	}
	for _, want := range []string{"layer 1 (" + upper.String() + ")", "no space left on device", dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	noLeftovers(t, dir)
	if n := blobRead.n.Load(); n > 5<<20 {
		t.Errorf("%d bytes of the 6 MiB layer read: the pull went on fetching after the disk was full", n)
	}

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

// bodyCounter counts the body bytes read of the responses whose URL path ends with path.
type bodyCounter struct {
	inner http.RoundTripper
	path  string
	n     atomic.Int64
}

func (c *bodyCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.inner.RoundTrip(req)
	if err == nil && strings.HasSuffix(req.URL.Path, c.path) {
		resp.Body = &countedBody{ReadCloser: resp.Body, n: &c.n}
	}
	return resp, err
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
