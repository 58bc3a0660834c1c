package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "configuration.toml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name, content, wantErr string
		check                  func(*Config) bool
	}{
		{name: "empty file gives defaults", content: "",
			check: func(c *Config) bool {
				return c.Hypervisor.MemoryMiB == 512 && c.Hypervisor.Image == DefaultImageDir && !c.Runtime.GuestPull
			}},
		{name: "all keys", content: `
[hypervisor]
image = "img"
memory_mib = 1024
vcpus = 2
accel = "tcg"
machine = "microvm"
tee = "none"
boot_timeout = "30s"
kernel_params = ["a=b"]
debug_console = true
[runtime]
allowed_annotations = ["io.veil.config.hypervisor.*"]
guest_pull = true
`, check: func(c *Config) bool {
			h := c.Hypervisor
			return h.MemoryMiB == 1024 && h.VCPUs == 2 && h.Accel == "tcg" && h.Machine == "microvm" &&
				h.BootTimeout.Duration == 30*time.Second && h.DebugConsole && filepath.IsAbs(h.Image) &&
				len(c.Runtime.AllowedAnnotations) == 1 && c.Runtime.GuestPull
		}},
		{name: "unknown key", content: "[hypervisor]\nmemroy_mib = 3\n", wantErr: "unknown key"},
		{name: "bad values reported together", content: "[hypervisor]\naccel = \"x\"\nvcpus = 0\n",
			wantErr: "hypervisor.vcpus 0"},
		{name: "bad duration", content: "[hypervisor]\nboot_timeout = \"soon\"\n", wantErr: "soon"},
		{name: "bad tee", content: "[hypervisor]\ntee = \"sgx\"\n", wantErr: "hypervisor.tee"},
		{name: "no scratch disk for tee none", content: "[hypervisor]\ntee = \"none\"\n",
			check: func(c *Config) bool { return c.Hypervisor.ScratchDiskMiB == 0 }},
		{name: "a scratch disk for a confidential tee", content: "[hypervisor]\ntee = \"sim\"\n",
			check: func(c *Config) bool {
				return c.Hypervisor.ScratchDiskMiB == DefaultScratchDiskMiB && c.Hypervisor.ScratchDir == DefaultScratchDir
			}},
		{name: "scratch disk off in a confidential tee", content: "[hypervisor]\ntee = \"sim\"\nscratch_disk_mib = 0\n",
			check: func(c *Config) bool { return c.Hypervisor.ScratchDiskMiB == 0 }},
		{name: "scratch disk for tee none when configured", content: "[hypervisor]\nscratch_disk_mib = 2048\nscratch_dir = \"/srv/s\"\n",
			check: func(c *Config) bool {
				return c.Hypervisor.ScratchDiskMiB == 2048 && c.Hypervisor.ScratchDir == "/srv/s"
			}},
		{name: "tiny scratch disk", content: "[hypervisor]\nscratch_disk_mib = 8\n", wantErr: "scratch_disk_mib 8"},
		{name: "relative scratch dir", content: "[hypervisor]\nscratch_disk_mib = 100\nscratch_dir = \"s\"\n", wantErr: "scratch_dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(write(t, tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Errorf("err %v is not InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.toml")); err == nil {
		t.Fatal("a missing explicit file must be an error")
	}
}

func TestResolve(t *testing.T) {
	t.Setenv(EnvPath, "/env.toml")
	if got := Resolve("/opt.toml"); got != "/opt.toml" {
		t.Errorf("options path: got %s", got)
	}
	if got := Resolve(""); got != "/env.toml" {
		t.Errorf("env path: got %s", got)
	}
	t.Setenv(EnvPath, "")
	if got := Resolve(""); got != DefaultPath {
		t.Errorf("default: got %s", got)
	}
}

func TestWithAnnotations(t *testing.T) {
	base := Default()
	base.Runtime.AllowedAnnotations = []string{AnnotationMemory, AnnotationKernelParams}
	tests := []struct {
		name    string
		ann     map[string]string
		wantErr error
		check   func(*Config) bool
	}{
		{name: "allowed", ann: map[string]string{AnnotationMemory: "1024", AnnotationKernelParams: "x=1 y"},
			check: func(c *Config) bool {
				return c.Hypervisor.MemoryMiB == 1024 && strings.Join(c.Hypervisor.KernelParams, ",") == "x=1,y"
			}},
		{name: "others ignored", ann: map[string]string{"io.kubernetes.cri.sandbox-id": "x"},
			check: func(c *Config) bool { return c.Hypervisor.MemoryMiB == 512 }},
		{name: "not allowed", ann: map[string]string{AnnotationVCPUs: "4"}, wantErr: errdefs.ErrPermissionDenied},
		{name: "bad value", ann: map[string]string{AnnotationMemory: "lots"}, wantErr: errdefs.ErrInvalidArgument},
		{name: "too small", ann: map[string]string{AnnotationMemory: "1"}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := base.WithAnnotations(tt.ann)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected %+v", c.Hypervisor)
			}
			if base.Hypervisor.MemoryMiB != 512 || len(base.Hypervisor.KernelParams) != 0 {
				t.Error("WithAnnotations changed its receiver")
			}
		})
	}
}
