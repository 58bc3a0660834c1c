package storage

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// slowRegistry serves a random image and delays each blob by delay, counting blob requests.
func slowRegistry(t *testing.T, delay time.Duration) (host, ref, digest string, blobs *atomic.Int32) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	blobs = &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobs.Add(1)
			time.Sleep(delay)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref = host + "/test/slow:1"
	r, _ := name.ParseReference(ref, name.Insecure)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	blobs.Store(0)
	return host, ref, d.String(), blobs
}

// A request that gives up before its pull ends (the kubelet's runtime request timeout) fails,
// but the pull goes on and fills the cache: the request made again finds the image there,
// and the registry served each blob once.
func TestPullOutlivesItsRequest(t *testing.T) {
	needRoot(t)
	host, ref, digest, blobs := slowRegistry(t, 300*time.Millisecond)
	root := mountedTempDir(t)
	g := &GuestPull{Dir: root + "/images", InsecureRegistries: []string{host}}
	mp := filepath.Join(root, "containers", "c1", "rootfs")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := g.Mount(ctx, "c1", ref, digest, mp)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still being pulled in the guest") {
		t.Fatalf("a request that gave up: %v", err)
	}
	if mounted(t, mp) {
		t.Fatal("mounted after the request gave up")
	}
	// Two requests made again while the pull goes on: both wait for it.
	errs := make(chan error, 2)
	for _, id := range []string{"c1", "c2"} {
		go func() {
			undo, err := g.Mount(context.Background(), id, ref, digest, filepath.Join(root, "containers", id, "rootfs"))
			if err == nil {
				err = undo()
			}
			errs <- err
		}()
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// 3 layers and a config, each fetched once.
	if n := blobs.Load(); n != 4 {
		t.Fatalf("the registry served %d blob requests, want 4 (one pull)", n)
	}
}
