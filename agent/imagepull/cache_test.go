package imagepull_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/veil-runtime/veil/agent/imagepull"
)

func TestCacheSecondPullIsLocal(t *testing.T) {
	reg := newRegistry(t)
	tag, d := reg.push(t, "app", layeredImage(t))
	o := reg.opts()
	o.CacheDir = t.TempDir()

	first, err := imagepull.Pull(context.Background(), digestRef(tag, d), o)
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached || len(reg.requests("/blobs/")) != 3 {
		t.Fatalf("first pull: cached=%v, blob requests %q", first.Cached, reg.requests("/blobs/"))
	}
	want := filepath.Join(o.CacheDir, "images", "sha256", d.Hex, "linux_amd64", "rootfs")
	if first.RootFS != want {
		t.Errorf("RootFS = %s, want %s", first.RootFS, want)
	}
	if tr := tree(t, first.RootFS); !slices.Equal(tr, layeredTree) {
		t.Errorf("tree: %q", tr)
	}

	reg.reset()
	o.Digest = d.String()
	second, err := imagepull.Pull(context.Background(), tag, o) // same pin, by tag this time
	if err != nil {
		t.Fatal(err)
	}
	if reqs := reg.requests("/"); len(reqs) != 0 {
		t.Errorf("second pull made requests: %q", reqs)
	}
	if !second.Cached || second.RootFS != first.RootFS || second.ConfigDigest != first.ConfigDigest ||
		!slices.Equal(second.Config.Entrypoint, testConfig.Entrypoint) || len(second.Layers) != 2 {
		t.Errorf("second pull: %+v, want the first's %+v", second, first)
	}
	if e := entries(t, filepath.Join(o.CacheDir, "tmp")); len(e) != 0 {
		t.Errorf("staging left: %q", e)
	}
}

// TestCacheConcurrent: many pulls of the same pin unpack it once.
func TestCacheConcurrent(t *testing.T) {
	reg := newRegistry(t)
	tag, d := reg.push(t, "app", layeredImage(t))
	o := reg.opts()
	o.CacheDir = t.TempDir()

	const n = 8
	var wg sync.WaitGroup
	imgs := make([]*imagepull.Image, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			imgs[i], errs[i] = imagepull.Pull(context.Background(), digestRef(tag, d), o)
		}()
	}
	wg.Wait()
	cached := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if imgs[i].RootFS != imgs[0].RootFS {
			t.Errorf("pull %d: RootFS %s, want %s", i, imgs[i].RootFS, imgs[0].RootFS)
		}
		if imgs[i].Cached {
			cached++
		}
	}
	if cached != n-1 {
		t.Errorf("%d of %d pulls came from the cache, want %d", cached, n, n-1)
	}
	for _, b := range reg.requests("/blobs/") {
		if c := len(reg.requests(b[len("GET "):])); c != 1 {
			t.Errorf("%s fetched %d times, want once", b, c)
		}
	}
	if tr := tree(t, imgs[0].RootFS); !slices.Equal(tr, layeredTree) {
		t.Errorf("tree: %q", tr)
	}
}

// TestCancelledPull: a cancelled pull fails and leaves no cache entry or staging behind.
func TestCancelledPull(t *testing.T) {
	reg := newRegistry(t)
	tag, d := reg.push(t, "app", layeredImage(t))
	o := reg.opts()
	o.CacheDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := imagepull.Pull(ctx, digestRef(tag, d), o)
	if err == nil {
		t.Fatal("pull with a cancelled context succeeded")
	}
	if e := entries(t, filepath.Join(o.CacheDir, "images")); len(e) != 0 {
		t.Errorf("cache entries after a cancelled pull: %q", e)
	}
	if e := entries(t, filepath.Join(o.CacheDir, "tmp")); len(e) != 0 {
		t.Errorf("staging after a cancelled pull: %q", e)
	}
}
