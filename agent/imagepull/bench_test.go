package imagepull_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
)

// benchTars makes 4 layers of 16 files of 128 KiB (half random, half text-like data): 8 MiB.
func benchTars(b *testing.B) ([][]byte, int) {
	rng := rand.New(rand.NewPCG(1, 2))
	var tars [][]byte
	total := 0
	for l := range 4 {
		var es []entry
		for f := range 16 {
			body := make([]byte, 128<<10)
			for i := range body {
				if f%2 == 0 {
					body[i] = byte(rng.Uint32())
				} else {
					body[i] = "abcdefgh \n"[rng.IntN(10)]
				}
			}
			total += len(body)
			es = append(es, file(fmt.Sprintf("l%d/f%d", l, f), string(body)))
		}
		tars = append(tars, tarBytes(b, es...))
	}
	return tars, total
}

// BenchmarkPull pulls and unpacks a 4-layer, 8 MiB image from the loopback registry into a
// fresh directory; MB/s counts unpacked file bytes.
func BenchmarkPull(b *testing.B) {
	reg := newRegistry(b)
	tars, total := benchTars(b)
	var layers []v1.Layer
	for _, t := range tars {
		layers = append(layers, layerOfTar(b, t))
	}
	tag, d := reg.push(b, "bench", image(b, v1.Config{}, "amd64", layers...))
	benchPull(b, digestRef(tag, d), reg.opts(), total)
}

// BenchmarkPullEncrypted is BenchmarkPull with every layer encrypted (ocicrypt AES-256-CTR +
// HMAC, keys wrapped in CoCo's format); the guest holds an attested session, so each pull
// costs one KEK request per layer to the loopback KBS besides the decryption.
func BenchmarkPullEncrypted(b *testing.B) {
	k := kbstest.NewKBS(b, true)
	kek := newKEK()
	k.Put(b, kekPath, kek)
	reg := newRegistry(b)
	tars, total := benchTars(b)
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, t := range tars {
		var err error
		if img, err = mutate.Append(img, encryptLayer(b, t, wrapping{kek: kek, kid: kekURI})); err != nil {
			b.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		b.Fatal(err)
	}
	tag, d := reg.push(b, "bench", img)
	o := reg.opts()
	o.KeyProvider = imagepull.NewKBSKeyProvider(hub(b, k, kbstest.Measurement))
	benchPull(b, digestRef(tag, d), o, total)
}

// layerOfTar makes a gzip layer of a tar.
func layerOfTar(b *testing.B, t []byte) v1.Layer {
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(t)), nil })
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func benchPull(b *testing.B, ref string, o imagepull.Options, total int) {
	b.SetBytes(int64(total))
	b.ResetTimer()
	for range b.N {
		o.Dest = filepath.Join(b.TempDir(), "rootfs")
		if _, err := imagepull.Pull(context.Background(), ref, o); err != nil {
			b.Fatal(err)
		}
	}
}
