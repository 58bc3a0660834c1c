//go:build e2e

// Package bench measures what `make bench` prints: boot to agent-ready as a ratio to a bare
// boot of the same kernel with a trivial init (both measured in this run), the health-check
// round trip over virtio-serial, the agent's memory in the guest, the initrd's size, and the
// policy's share of a CreateContainer and an ExecProcess round trip under the baseline that
// veil-genpolicy makes for a pod (policy_test.go). Each benchmark runs a fixed number of
// samples (run with -benchtime=1x) and reports its figures with b.ReportMetric.
package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	guestimage "github.com/veil-runtime/veil/guest-image"
	"github.com/veil-runtime/veil/guest-image/kernel"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/hypervisor/qemu"
	"github.com/veil-runtime/veil/shim/sandbox"
)

const bootSamples = 5

func imageDir(b *testing.B) string {
	dir := os.Getenv("VEIL_IMAGE")
	if dir == "" {
		b.Fatal("VEIL_IMAGE is not set: run `make bench`")
	}
	return dir
}

// trivialImage builds the baseline image: Debian's kernel (kind) or the veil kernel, an
// initrd whose /init only prints a marker and powers off.
func trivialImage(b *testing.B, kind kernel.Kind) string {
	dir := b.TempDir()
	init := filepath.Join(dir, "trivialinit")
	cmd := exec.Command("go", "build", "-o", init, "./trivialinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build trivial init: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "image")
	if _, err := guestimage.Build(context.Background(), guestimage.Options{OutDir: out, Init: init, Agent: init, Kernel: kind}); err != nil {
		b.Fatalf("build baseline image: %v", err)
	}
	return out
}

// bareBoot times QEMU start to the trivial init's marker on the console.
func bareBoot(b *testing.B, img *sandbox.Image, id string) time.Duration {
	cfg := hypervisor.Config{ID: id, StateDir: filepath.Join(sandbox.DefaultStateRoot, id),
		Kernel: img.Kernel, Initrd: img.Initrd, KernelParams: img.Cmdline}
	vm, err := qemu.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Stop(context.Background())
	start := time.Now()
	if err := vm.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	for deadline := start.Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if data, _ := os.ReadFile(vm.ConsoleLog()); strings.Contains(string(data), "veil-bench: init reached") {
			return time.Since(start)
		}
	}
	b.Fatal("trivial init never reached")
	return 0
}

// veilBoot times sandbox.Boot: QEMU start to the agent answering Check with SERVING.
func veilBoot(b *testing.B, dir, id string) time.Duration {
	start := time.Now()
	sb, err := sandbox.Boot(context.Background(), sandbox.Options{ID: id, ImageDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	sb.Close(context.Background())
	return d
}

func BenchmarkBootToAgentReady(b *testing.B) {
	dir := imageDir(b)
	bare, err := sandbox.LoadImage(trivialImage(b, kernel.Debian))
	if err != nil {
		b.Fatal(err)
	}
	var bareT, veilT []time.Duration
	for i := 0; i < bootSamples; i++ { // interleaved, so that load drifts hit both alike
		bareT = append(bareT, bareBoot(b, bare, fmt.Sprintf("bench-bare-%d", i)))
		veilT = append(veilT, veilBoot(b, dir, fmt.Sprintf("bench-veil-%d", i)))
	}
	bm, vm := median(bareT), median(veilT)
	b.ReportMetric(bm.Seconds(), "bare-boot-s")
	b.ReportMetric(vm.Seconds(), "veil-boot-s")
	b.ReportMetric(vm.Seconds()/bm.Seconds(), "ratio")
}

func BenchmarkHealthCheck(b *testing.B) {
	const calls = 2000
	sb, err := sandbox.Boot(context.Background(), sandbox.Options{ID: "bench-health", ImageDir: imageDir(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close(context.Background())
	lat := make([]time.Duration, 0, calls)
	for i := 0; i < calls; i++ {
		start := time.Now()
		if _, err := sb.Agent.Check(context.Background(), &api.CheckRequest{}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")

	d, err := sb.Agent.GetGuestDetails(context.Background(), &api.GetGuestDetailsRequest{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(d.GetAgentRssBytes())/(1<<20), "agent-RSS-MiB")
	b.ReportMetric(float64(d.GetInitRssBytes())/(1<<20), "init-RSS-MiB")
	img, err := sandbox.LoadImage(imageDir(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(img.Manifest.Initrd.Size)/(1<<20), "initrd-MiB")
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
