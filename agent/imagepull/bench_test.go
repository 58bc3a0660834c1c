package imagepull_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/veil-runtime/veil/agent/imagepull"
)

// BenchmarkPull pulls and unpacks a 4-layer, 8 MiB image (half random, half text-like data)
// from the loopback registry into a fresh directory; MB/s counts unpacked file bytes.
func BenchmarkPull(b *testing.B) {
	reg := newRegistry(b)
	rng := rand.New(rand.NewPCG(1, 2))
	var layers []v1.Layer
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
		layers = append(layers, layer(b, es...))
	}
	tag, d := reg.push(b, "bench", image(b, v1.Config{}, "amd64", layers...))
	ref := digestRef(tag, d)
	b.SetBytes(int64(total))
	b.ResetTimer()
	for range b.N {
		o := reg.opts()
		o.Dest = filepath.Join(b.TempDir(), "rootfs")
		if _, err := imagepull.Pull(context.Background(), ref, o); err != nil {
			b.Fatal(err)
		}
	}
}
