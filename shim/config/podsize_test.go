package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestWithPodSize(t *testing.T) {
	base := Default() // 512 MiB, 1 vCPU, size_from_pod on
	for _, tc := range []struct {
		name      string
		ann       map[string]string
		off       bool
		tee       string
		mem, cpus uint32
		wantErr   string
	}{
		{name: "no limits", ann: nil, mem: 512, cpus: 1},
		// containerd writes 0 for an unset limit, and a quota of -1 for none.
		{name: "zeros", ann: map[string]string{AnnotationSandboxMemory: "0", AnnotationSandboxCPUQuota: "0", AnnotationSandboxCPUPeriod: "0"}, mem: 512, cpus: 1},
		{name: "no quota", ann: map[string]string{AnnotationSandboxCPUQuota: "-1", AnnotationSandboxCPUPeriod: "100000"}, mem: 512, cpus: 1},
		{name: "256Mi and 1.5 CPUs", ann: map[string]string{
			AnnotationSandboxMemory: "268435456", AnnotationSandboxCPUQuota: "150000", AnnotationSandboxCPUPeriod: "100000"}, mem: 768, cpus: 3},
		{name: "rounded up to MiB", ann: map[string]string{AnnotationSandboxMemory: "1048577"}, mem: 514, cpus: 1},
		{name: "250m", ann: map[string]string{AnnotationSandboxCPUQuota: "25000", AnnotationSandboxCPUPeriod: "100000"}, mem: 512, cpus: 2},
		{name: "capped at 255 vCPUs", ann: map[string]string{AnnotationSandboxCPUQuota: "100000000", AnnotationSandboxCPUPeriod: "100000"}, mem: 512, cpus: 255},
		{name: "off", off: true, ann: map[string]string{AnnotationSandboxMemory: "268435456", AnnotationSandboxCPUQuota: "200000", AnnotationSandboxCPUPeriod: "100000"}, mem: 512, cpus: 1},
		{name: "bad memory", ann: map[string]string{AnnotationSandboxMemory: "lots"}, wantErr: AnnotationSandboxMemory},
		{name: "bad quota", ann: map[string]string{AnnotationSandboxCPUQuota: "1.5", AnnotationSandboxCPUPeriod: "100000"}, wantErr: AnnotationSandboxCPUQuota},
		{name: "a TEE keeps its vCPUs", tee: "sim", ann: map[string]string{
			AnnotationSandboxMemory: "268435456", AnnotationSandboxCPUQuota: "150000", AnnotationSandboxCPUPeriod: "100000"}, mem: 768, cpus: 1},
		{name: "too much memory", ann: map[string]string{AnnotationSandboxMemory: "9223372036854775807"}, wantErr: "too much"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *base
			c.Hypervisor.SizeFromPod = !tc.off
			if tc.tee != "" {
				c.Hypervisor.TEE = tc.tee
			}
			got, err := c.WithPodSize(tc.ann)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err %v, want an InvalidArgument naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Hypervisor.MemoryMiB != tc.mem || got.Hypervisor.VCPUs != tc.cpus {
				t.Errorf("VM %d MiB, %d vCPUs; want %d MiB, %d vCPUs", got.Hypervisor.MemoryMiB, got.Hypervisor.VCPUs, tc.mem, tc.cpus)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("sized configuration invalid: %v", err)
			}
			if c.Hypervisor.MemoryMiB != 512 || c.Hypervisor.VCPUs != 1 {
				t.Errorf("WithPodSize changed its receiver")
			}
		})
	}
}

func TestSizeFromPodKey(t *testing.T) {
	c, err := Load("configuration.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Hypervisor.SizeFromPod {
		t.Errorf("shipped configuration: size_from_pod off")
	}
}

// TestFitHost: more memory than the host has is refused with both figures; vCPUs are cut to
// the host's CPUs.
func TestFitHost(t *testing.T) {
	c := *Default()
	c.Hypervisor.MemoryMiB, c.Hypervisor.VCPUs = 4096, 8
	got, err := c.FitHost(8192, 2)
	if err != nil || got.Hypervisor.MemoryMiB != 4096 || got.Hypervisor.VCPUs != 2 {
		t.Fatalf("FitHost(8192, 2) = %+v, %v; want 4096 MiB, 2 vCPUs", got.Hypervisor, err)
	}
	if _, err := c.FitHost(2048, 2); err == nil || !errdefs.IsFailedPrecondition(err) ||
		!strings.Contains(err.Error(), "4096 MiB") || !strings.Contains(err.Error(), "2048 MiB") {
		t.Fatalf("FitHost(2048, 2) = %v, want a FailedPrecondition naming 4096 and 2048 MiB", err)
	}
}

func TestHostMemMiB(t *testing.T) {
	f := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(f, []byte("MemTotal:       24578796 kB\nMemFree:        22000000 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := HostMemMiB(f); got != 24002 {
		t.Errorf("HostMemMiB = %d, want 24002", got)
	}
	if got := HostMemMiB(filepath.Join(t.TempDir(), "none")); got != 0 {
		t.Errorf("HostMemMiB of a missing file = %d, want 0", got)
	}
	if got := HostMemMiB("/proc/meminfo"); got == 0 {
		t.Error("HostMemMiB(/proc/meminfo) = 0")
	}
}
