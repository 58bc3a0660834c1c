package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/hypervisor"
)

// testKernel is a guest kernel for boot tests: $VEIL_TEST_KERNEL, or the host's own.
func testKernel(t *testing.T) string {
	t.Helper()
	if k := os.Getenv("VEIL_TEST_KERNEL"); k != "" {
		return k
	}
	if ks, _ := filepath.Glob("/boot/vmlinuz-*"); len(ks) > 0 {
		return ks[len(ks)-1]
	}
	t.Fatal("needs a guest kernel: set VEIL_TEST_KERNEL=/path/to/vmlinuz (make unit sets it to the guest image's kernel)")
	return ""
}

// TestIntegrationBootPanics boots a kernel without a root file system: it panics, panic=-1
// and -no-reboot make QEMU exit cleanly, and the console log shows the panic.
func TestIntegrationBootPanics(t *testing.T) {
	requireQEMU(t)
	kernel := testKernel(t)
	// Only q35 boots for real here: microvm has no HPET, and under TCG on a loaded 2-core
	// machine its PIT calibration stalled past 90 s (its command line is tested in the tables).
	for _, machine := range []string{"q35"} {
		t.Run(machine, func(t *testing.T) {
			root := stateRoot(t)
			cfg := firmwareOnly(t, root)
			cfg.Kernel, cfg.Machine, cfg.Accel = kernel, machine, hypervisor.AccelAuto
			v := startVM(t, cfg, WithProbeCache(filepath.Join(root, "probe")))
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			werr := v.Wait(ctx)
			out, err := os.ReadFile(v.ConsoleLog())
			if werr != nil {
				t.Fatalf("Wait = %v, want a clean exit after the guest's panic; console:\n%s", werr, lastLines(string(out), 15))
			}
			if err != nil || !strings.Contains(string(out), "Kernel panic") {
				t.Fatalf("console log lacks the panic (err %v):\n%s", err, lastLines(string(out), 10))
			}
			cached, _ := filepath.Glob(filepath.Join(root, "probe", "*"))
			if len(cached) != 1 {
				t.Errorf("probe cache holds %v, want one answer", cached)
			}
			if err := v.Stop(ctx); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			requireGone(t, nil, cfg.StateDir)
		})
	}
}

// TestIntegrationProbeCache checks that auto picks an accelerator that boots, and that the
// second resolution comes from the cache.
func TestIntegrationProbeCache(t *testing.T) {
	requireQEMU(t)
	kernel := testKernel(t)
	o := newOptions([]Option{WithProbeCache(t.TempDir())})
	bin, err := o.qemuBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ver, err := binaryVersion(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	cfg := hypervisor.Config{Kernel: kernel, Accel: hypervisor.AccelAuto}
	first, err := resolveAccel(ctx, cfg, bin, ver, o)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	second, err := resolveAccel(ctx, cfg, bin, ver, o)
	if err != nil || second != first || time.Since(start) > time.Second {
		t.Fatalf("cached answer %q (%v) in %s, first was %q", second, err, time.Since(start), first)
	}
	t.Logf("auto accel on this host: %s", first)
}
