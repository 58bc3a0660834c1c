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

	"github.com/veil-runtime/veil/agent/api"
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
		t.Fatal("mounting an overlay needs root: run the test as root")
	}
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	ok, err := mountinfo.Mounted(p)
	return err == nil && ok
}

func TestGuestPullMount(t *testing.T) {
	needRoot(t)
	host, ref, digest := pushRandom(t)
	root := t.TempDir()
	g := &GuestPull{Root: root, InsecureRegistries: []string{host}}
	mp := filepath.Join(root, "containers", "c1", "rootfs")
	s := &api.Storage{Driver: GuestPullDriver, Source: ref, MountPoint: mp}

	undo, err := g.Mount(context.Background(), "c1", s, digest)
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
	// A second container of the same image shares the cache entry, not the first's writes.
	mp2 := filepath.Join(root, "containers", "c2", "rootfs")
	undo2, err := g.Mount(context.Background(), "c2", &api.Storage{Driver: GuestPullDriver, Source: ref, MountPoint: mp2}, digest)
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
	for _, p := range []string{mp, mp2, filepath.Join(root, "containers", "c1"), filepath.Join(root, "images", overlayDir, "c1")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after undo (err %v)", p, err)
		}
	}
	if _, err := os.Stat(cached[0]); err != nil {
		t.Errorf("the cache entry is gone after undo: %v", err)
	}
}

func TestGuestPullRefused(t *testing.T) {
	needRoot(t)
	host, ref, digest := pushRandom(t)
	root := t.TempDir()
	mp := filepath.Join(root, "containers", "c1", "rootfs")
	other := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name     string
		insecure []string
		s        *api.Storage
		digest   string
		want     error
		wantText string
	}{
		{"no digest", []string{host}, &api.Storage{Source: ref, MountPoint: mp}, "", errdefs.ErrInvalidArgument, "image digest is missing"},
		{"malformed digest", []string{host}, &api.Storage{Source: ref, MountPoint: mp}, "sha256:abc", errdefs.ErrInvalidArgument, "not a sha256 digest"},
		{"no source", []string{host}, &api.Storage{MountPoint: mp}, digest, errdefs.ErrInvalidArgument, "no image reference"},
		{"mount point in the cache", []string{host}, &api.Storage{Source: ref, MountPoint: root + "/images/x"}, digest, errdefs.ErrInvalidArgument, "image cache"},
		{"mount point outside the root", []string{host}, &api.Storage{Source: ref, MountPoint: "/tmp/x"}, digest, errdefs.ErrInvalidArgument, "is not below"},
		{"plain HTTP not listed", nil, &api.Storage{Source: ref, MountPoint: mp}, digest, imagepull.ErrInsecure, ""},
		{"another digest", []string{host}, &api.Storage{Source: ref, MountPoint: mp}, other, nil, "pull " + ref},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &GuestPull{Root: root, InsecureRegistries: tc.insecure}
			tc.s.Driver = GuestPullDriver
			undo, err := g.Mount(context.Background(), "c1", tc.s, tc.digest)
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

func TestMountRefusesGuestPullAndCache(t *testing.T) {
	for _, s := range []*api.Storage{
		{Driver: GuestPullDriver, Source: "r", MountPoint: Root + "/x"},
		{Driver: "tmpfs", MountPoint: ImagesDir},
		{Driver: "tmpfs", MountPoint: ImagesDir + "/images/sha256"},
		{Driver: "bind", Source: ImagesDir + "/images", MountPoint: Root + "/x"},
	} {
		if err := Mount(s); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%v: error %v, want InvalidArgument", s, err)
		}
	}
}
