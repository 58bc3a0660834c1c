//go:build e2e

package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	guestimage "github.com/veil-runtime/veil/guest-image"
	"github.com/veil-runtime/veil/guest-image/kernel"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// BenchmarkVeilKernel compares Veil's own kernel with Debian's cloud kernel (issue 14): boot
// to agent-ready of the veil-kernel image (VEIL_IMAGE_VEIL, `make image-veil`) ÷ a bare boot
// of Debian's kernel to a trivial init (the goal is ≤ 0.5), and a bare boot of the veil kernel
// ÷ a bare boot of Debian's. The three are sampled interleaved, so that load drifts on this
// shared machine hit them alike; the kernels' sizes are reported too.
func BenchmarkVeilKernel(b *testing.B) {
	dir := os.Getenv("VEIL_IMAGE_VEIL")
	if dir == "" {
		b.Skip("VEIL_IMAGE_VEIL is not set: `make bench` builds the veil-kernel image (make image-veil) and sets it")
	}
	veil, err := sandbox.LoadImage(dir)
	if err != nil {
		b.Fatal(err)
	}
	if veil.Manifest.KernelKind != string(kernel.Veil) {
		b.Fatalf("VEIL_IMAGE_VEIL=%s boots the %q kernel, not the veil kernel", dir, veil.Manifest.KernelKind)
	}
	bareDebian, err := sandbox.LoadImage(trivialImage(b, kernel.Debian))
	if err != nil {
		b.Fatal(err)
	}
	bareVeil, err := sandbox.LoadImage(trivialImage(b, kernel.Veil))
	if err != nil {
		b.Fatal(err)
	}
	var debianT, veilBareT, veilReadyT []time.Duration
	for i := 0; i < bootSamples; i++ {
		debianT = append(debianT, bareBoot(b, bareDebian, fmt.Sprintf("bench-kd-%d", i)))
		veilBareT = append(veilBareT, bareBoot(b, bareVeil, fmt.Sprintf("bench-kv-%d", i)))
		veilReadyT = append(veilReadyT, veilBoot(b, dir, fmt.Sprintf("bench-kr-%d", i)))
	}
	d, vb, vr := median(debianT), median(veilBareT), median(veilReadyT)
	b.ReportMetric(d.Seconds(), "bare-debian-s")
	b.ReportMetric(vb.Seconds(), "bare-veil-s")
	b.ReportMetric(vr.Seconds(), "veil-ready-s")
	b.ReportMetric(vr.Seconds()/d.Seconds(), "ready-veil/bare-debian")
	b.ReportMetric(vb.Seconds()/d.Seconds(), "bare-veil/bare-debian")
	b.ReportMetric(float64(bareDebian.Manifest.Kernel.Size)/(1<<20), "debian-kernel-MiB")
	b.ReportMetric(float64(veil.Manifest.Kernel.Size)/(1<<20), "veil-kernel-MiB")
	if c := veil.Manifest.KernelConfig; c != nil {
		b.Logf("veil kernel %s: config sha256 %s, source sha256 %s", veil.Manifest.KernelRelease, c.ConfigSHA256, c.SourceSHA256)
		// How long its (first, uncached) build took, from the kernel cache's record.
		rec, err := os.ReadFile(filepath.Join(guestimage.DefaultCacheDir, "veil-kernel", c.BuildKey, kernel.RecordFile))
		var r kernel.Result
		if err == nil && json.Unmarshal(rec, &r) == nil {
			b.ReportMetric(r.BuildSeconds, "veil-kernel-build-s")
		}
	}
}
