package genpolicy_test

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry is go-containerregistry's registry on a loopback port.
type testRegistry struct {
	t    *testing.T
	host string // 127.0.0.1:port
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &testRegistry{t: t, host: strings.TrimPrefix(srv.URL, "http://")}
}

// image makes a small random image with cfg as its config.
func (r *testRegistry) image(cfg v1.Config) v1.Image {
	r.t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		r.t.Fatal(err)
	}
	if img, err = mutate.Config(img, cfg); err != nil {
		r.t.Fatal(err)
	}
	return img
}

// push stores img as repo:tag and returns the full reference and the manifest digest.
func (r *testRegistry) push(repo string, img v1.Image) (ref, digest string) {
	r.t.Helper()
	ref = r.host + "/" + repo
	tag, err := name.NewTag(ref)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		r.t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		r.t.Fatal(err)
	}
	return ref, d.String()
}

// pushIndex stores an index of one image per platform as repo:tag.
func (r *testRegistry) pushIndex(repo string, imgs map[string]v1.Image) string {
	r.t.Helper()
	var idx v1.ImageIndex = empty.Index
	for plat, img := range imgs {
		p, err := v1.ParsePlatform(plat)
		if err != nil {
			r.t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	ref := r.host + "/" + repo
	tag, err := name.NewTag(ref)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		r.t.Fatal(err)
	}
	return ref
}
