package imagepull_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/veil-runtime/veil/agent/imagepull"
)

var testConfig = v1.Config{
	Entrypoint: []string{"/bin/app"},
	Cmd:        []string{"--serve"},
	Env:        []string{"PATH=/bin", "MODE=test"},
	User:       "1000:1000",
	WorkingDir: "/srv",
}

// layeredImage has a lower layer and an upper one that whites out a file, makes a directory
// opaque and replaces a file.
func layeredImage(t testing.TB) v1.Image {
	lower := layer(t,
		dir("bin"), entry{name: "bin/app", body: "app v1", mode: 0o755}, symlink("bin/sh", "app"),
		dir("etc"), file("etc/hostname", "lower"),
		dir("old"), file("old/gone", "deleted above"), file("old/kept", "kept"),
		dir("opq"), file("opq/a", "a"), dir("opq/sub"), file("opq/sub/b", "b"),
	)
	upper := layer(t,
		dir("etc"), file("etc/hostname", "upper"),
		dir("old"), file("old/.wh.gone", ""),
		dir("opq"), file("opq/.wh..wh..opq", ""), file("opq/c", "c"),
		symlink("abs", "/etc/hostname"),
	)
	return image(t, testConfig, "amd64", lower, upper)
}

var layeredTree = []string{
	"abs->/etc/hostname",
	"bin/", "bin/app=app v1", "bin/sh->app",
	"etc/", "etc/hostname=upper",
	"old/", "old/kept=kept",
	"opq/", "opq/c=c",
}

func TestPullByDigest(t *testing.T) {
	reg := newRegistry(t)
	img := layeredImage(t)
	tag, d := reg.push(t, "app", img)
	cd, _ := img.ConfigName()
	cf, _ := img.ConfigFile()

	for name, pin := range map[string]struct{ ref, digest string }{
		"name@digest":    {ref: digestRef(tag, d)},
		"tag+Digest":     {ref: tag, digest: d.String()},
		"both, matching": {ref: digestRef(tag, d), digest: d.String()},
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			o := reg.opts()
			o.Dest, o.Digest = filepath.Join(parent, "rootfs"), pin.digest
			got, err := imagepull.Pull(context.Background(), pin.ref, o)
			if err != nil {
				t.Fatal(err)
			}
			if tr := tree(t, o.Dest); !slices.Equal(tr, layeredTree) {
				t.Errorf("tree:\n got %q\nwant %q", tr, layeredTree)
			}
			if got.Digest != d || got.ManifestDigest != d || got.ConfigDigest != cd || got.RootFS != o.Dest {
				t.Errorf("digests: got %+v, want manifest %s config %s", got, d, cd)
			}
			if len(got.Layers) != 2 || got.Layers[1].DiffID != cf.RootFS.DiffIDs[1] {
				t.Errorf("layers: %+v", got.Layers)
			}
			c := got.Config
			if !slices.Equal(c.Entrypoint, testConfig.Entrypoint) || !slices.Equal(c.Cmd, testConfig.Cmd) ||
				!slices.Equal(c.Env, testConfig.Env) || c.User != testConfig.User || c.WorkingDir != testConfig.WorkingDir {
				t.Errorf("config: got %+v, want %+v", c, testConfig)
			}
			if e := entries(t, parent); !slices.Equal(e, []string{"rootfs"}) {
				t.Errorf("parent holds %q, want only rootfs", e)
			}
		})
	}
}

// TestRefusedBeforeFetch: refusals that must happen before any layer (or any request).
func TestRefusedBeforeFetch(t *testing.T) {
	reg := newRegistry(t)
	tag, d := reg.push(t, "app", layeredImage(t))
	_, other := reg.push(t, "other", image(t, v1.Config{}, "", layer(t, file("x", "x"))))

	tests := []struct {
		name, ref, digest string
		insecure          bool // list the registry as insecure
		wantErr           error
		wantReqs          bool // a manifest request is expected, but no blob
		wantMsg           string
	}{
		{"tag only", tag, "", true, imagepull.ErrNotPinned, false, "names a tag"},
		{"pin differs from ref", digestRef(tag, d), other.String(), true, imagepull.ErrDigestMismatch, false, "Options.Digest is " + other.String()},
		{"tag moved", tag, other.String(), true, imagepull.ErrDigestMismatch, true, "want " + other.String() + ", got " + d.String()},
		{"plain HTTP to unlisted host", digestRef(tag, d), "", false, imagepull.ErrInsecure, false, "not in Options.InsecureRegistries"},
		{"bad pin", tag, "sha256:xyz", true, nil, false, "Options.Digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg.reset()
			parent := t.TempDir()
			o := reg.opts()
			if !tt.insecure {
				o.InsecureRegistries = nil
			}
			o.Dest, o.Digest = filepath.Join(parent, "rootfs"), tt.digest
			_, err := imagepull.Pull(context.Background(), tt.ref, o)
			t.Logf("err: %v", err)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
			if n := len(reg.requests("/blobs/")); n != 0 {
				t.Errorf("%d blob requests, want none", n)
			}
			if n := len(reg.requests("/manifests/")); (n > 0) != tt.wantReqs {
				t.Errorf("%d manifest requests, want some: %v", n, tt.wantReqs)
			}
			if e := entries(t, parent); len(e) != 0 {
				t.Errorf("left behind: %q", e)
			}
		})
	}
}

func TestMultiPlatformIndex(t *testing.T) {
	reg := newRegistry(t)
	tag, d := reg.pushIndex(t, "multi", map[string]v1.Image{
		"linux/amd64":    image(t, v1.Config{Cmd: []string{"amd64"}}, "amd64", layer(t, file("arch", "amd64"))),
		"linux/arm64/v8": image(t, v1.Config{Cmd: []string{"arm64"}}, "arm64", layer(t, file("arch", "arm64"))),
	})
	for _, tt := range []struct {
		platform *v1.Platform
		want     string
		wantErr  error
	}{
		{nil, "arch=amd64", nil},
		{&v1.Platform{OS: "linux", Architecture: "arm64"}, "arch=arm64", nil},
		{&v1.Platform{OS: "linux", Architecture: "s390x"}, "", imagepull.ErrPlatform},
	} {
		o := reg.opts()
		o.Dest, o.Platform = filepath.Join(t.TempDir(), "rootfs"), tt.platform
		img, err := imagepull.Pull(context.Background(), digestRef(tag, d), o)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), "linux/amd64") {
				t.Errorf("%v: err = %v, want %v listing the platforms", tt.platform, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if tr := tree(t, o.Dest); !slices.Equal(tr, []string{tt.want}) || img.Digest != d || img.ManifestDigest == d {
			t.Errorf("%v: tree %q, digests %s / %s", tt.platform, tr, img.Digest, img.ManifestDigest)
		}
	}
}

func TestPlatformMismatchOnManifest(t *testing.T) {
	reg := newRegistry(t)
	tag, d := reg.push(t, "arm", image(t, v1.Config{}, "arm64", layer(t, file("x", "x"))))
	o := reg.opts()
	o.Dest = filepath.Join(t.TempDir(), "rootfs")
	if _, err := imagepull.Pull(context.Background(), digestRef(tag, d), o); !errors.Is(err, imagepull.ErrPlatform) {
		t.Fatalf("err = %v, want ErrPlatform", err)
	}
	if n := len(reg.requests("/blobs/")); n != 1 {
		t.Errorf("%d blob requests, want only the config", n)
	}
}

func TestOptionsRefused(t *testing.T) {
	for name, o := range map[string]imagepull.Options{
		"no destination":   {},
		"two destinations": {Dest: "/x", CacheDir: "/y"},
		"platform w/o OS":  {Dest: "/x", Platform: &v1.Platform{Architecture: "amd64"}},
	} {
		_, err := imagepull.Pull(context.Background(), "example.com/a@sha256:"+strings.Repeat("0", 64), o)
		if !errors.Is(err, imagepull.ErrOptions) {
			t.Errorf("%s: err = %v, want ErrOptions", name, err)
		}
	}
}
