package storage

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/imagepull"
)

// pushRandom pushes a random two-layer image to a loopback registry and returns the
// registry's host, the reference by tag and the manifest digest.
func pushRandom(t *testing.T) (host, ref, digest string) {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	return push(t, img, "test/app:1")
}

// push writes img as repo (repo:tag) to a new loopback registry, closed when t ends, and
// returns the registry's host, the reference and the manifest digest.
func push(t *testing.T, img v1.Image, repo string) (host, ref, digest string) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	ref = host + "/" + repo
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return host, ref, d.String()
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("mounting needs root: run the test as root")
	}
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	ok, err := mountinfo.Mounted(p)
	return err == nil && ok
}

// mountedTempDir is a temporary directory under which the test may leave mounts (the sealed
// image cache): they are detached, deepest first, before the directory is removed.
func mountedTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			t.Error(err)
			return
		}
		for i := len(infos) - 1; i >= 0; i-- {
			_ = unix.Unmount(infos[i].Mountpoint, unix.MNT_DETACH)
		}
	})
	return dir
}

func TestGuestPullMount(t *testing.T) {
	needRoot(t)
	host, ref, digest := pushRandom(t)
	root := mountedTempDir(t)
	g := &GuestPull{Dir: root + "/images", InsecureRegistries: []string{host}}
	mp := filepath.Join(root, "containers", "c1", "rootfs")

	undo, err := g.Mount(context.Background(), "c1", ref, digest, mp)
	if err != nil {
		t.Fatal(err)
	}
	if !mounted(t, mp) {
		t.Fatalf("%s is not mounted", mp)
	}
	entries, err := os.ReadDir(mp)
	if err != nil || len(entries) == 0 {
		t.Fatalf("rootfs %s: %d entries, %v", mp, len(entries), err)
	}
	// A write goes to the container's upper directory, never to the shared cache.
	if err := os.WriteFile(filepath.Join(mp, "written"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cached, _ := filepath.Glob(filepath.Join(root, "images", "images", "sha256", "*", "*", "rootfs"))
	if len(cached) != 1 {
		t.Fatalf("cache entries: %v", cached)
	}
	if _, err := os.Stat(filepath.Join(cached[0], "written")); !os.IsNotExist(err) {
		t.Fatalf("a container's write reached the cache (err %v)", err)
	}
	// The cache entry is sealed: read-only to the agent itself.
	if err := os.WriteFile(filepath.Join(cached[0], "planted"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("a write into the sealed cache entry: %v, want EROFS", err)
	}
	// A second container of the same image shares the cache entry, not the first's writes.
	mp2 := filepath.Join(root, "containers", "c2", "rootfs")
	undo2, err := g.Mount(context.Background(), "c2", ref, digest, mp2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mp2, "written")); !os.IsNotExist(err) {
		t.Fatalf("c2 sees c1's write (err %v)", err)
	}
	for _, u := range []func() error{undo2, undo} {
		if err := u(); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{mp, mp2, filepath.Join(root, "images", overlayDir, "c1")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after undo (err %v)", p, err)
		}
	}
	if _, err := os.Stat(cached[0]); err != nil {
		t.Errorf("the cache entry is gone after undo: %v", err)
	}
}

// An entry that is not sealed (a leftover, or one changed behind the agent's back) is never
// reused: it is removed and pulled again.
func TestGuestPullUnsealedEntryPulledAgain(t *testing.T) {
	needRoot(t)
	host, ref, digest := pushRandom(t)
	root := mountedTempDir(t)
	unsealed := &GuestPull{Dir: root + "/images", InsecureRegistries: []string{host}, NoSeal: true}
	mp := filepath.Join(root, "containers", "c1", "rootfs")
	undo, err := unsealed.Mount(context.Background(), "c1", ref, digest, mp)
	if err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	cached, _ := filepath.Glob(filepath.Join(root, "images", "images", "sha256", "*", "*", "rootfs"))
	if len(cached) != 1 {
		t.Fatalf("cache entries: %v", cached)
	}
	if err := os.WriteFile(filepath.Join(cached[0], "planted"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := &GuestPull{Dir: root + "/images", InsecureRegistries: []string{host}}
	undo, err = g.Mount(context.Background(), "c1", ref, digest, mp)
	if err != nil {
		t.Fatal(err)
	}
	defer undo()
	if _, err := os.Stat(filepath.Join(mp, "planted")); !os.IsNotExist(err) {
		t.Fatalf("the unsealed entry was reused: planted file visible (err %v)", err)
	}
	if !mounted(t, filepath.Dir(cached[0])) {
		t.Fatal("the entry pulled again is not sealed")
	}
}

func TestGuestPullRefused(t *testing.T) {
	needRoot(t)
	host, ref, digest := pushRandom(t)
	root := mountedTempDir(t)
	mp := filepath.Join(root, "containers", "c1", "rootfs")
	other := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name     string
		insecure []string
		ref      string
		digest   string
		want     error
		wantText string
	}{
		{"no digest", []string{host}, ref, "", errdefs.ErrInvalidArgument, "image digest is missing"},
		{"malformed digest", []string{host}, ref, "sha256:abc", errdefs.ErrInvalidArgument, "not a sha256 digest"},
		{"no source", []string{host}, "", digest, errdefs.ErrInvalidArgument, "no image reference"},
		{"plain HTTP not listed", nil, ref, digest, imagepull.ErrInsecure, ""},
		{"another digest", []string{host}, ref, other, nil, "pull " + ref},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &GuestPull{Dir: root + "/images", InsecureRegistries: tc.insecure}
			undo, err := g.Mount(context.Background(), "c1", tc.ref, tc.digest, mp)
			if err == nil {
				_ = undo()
				t.Fatal("mounted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v: want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("error %q: want %q in it", err, tc.wantText)
			}
			if mounted(t, mp) {
				t.Fatalf("%s left mounted", mp)
			}
			if _, err := os.Stat(filepath.Join(root, "images", overlayDir, "c1")); !os.IsNotExist(err) {
				t.Fatalf("overlay directory left (err %v)", err)
			}
		})
	}
}
