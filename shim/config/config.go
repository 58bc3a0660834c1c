// Package config reads the shim's TOML configuration: one file per runtime handler (qemu,
// qemu-snp, ...), saying which guest image to boot, how large the VM is, which TEE it runs in
// and which pod annotations may override those defaults. docs/config.md documents every key.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/hypervisor"
)

// DefaultPath is read when neither the runtime options' ConfigPath nor $VEIL_CONFIG names a
// file.
const DefaultPath = "/etc/veil/configuration.toml"

// EnvPath names an environment variable that overrides DefaultPath (the runtime options'
// ConfigPath still wins over it).
const EnvPath = "VEIL_CONFIG"

// DefaultImageDir is where `make install` puts the guest image.
const DefaultImageDir = "/usr/share/veil/image"

// Config is one runtime handler's configuration.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor"`
	Runtime    Runtime    `toml:"runtime"`
	// Path is the file the configuration was read from ("" for the built-in defaults).
	Path string `toml:"-"`
}

// Hypervisor says which VM each sandbox gets.
type Hypervisor struct {
	// Image is the guest image directory (vmlinuz, initrd.img, manifest.json).
	Image string `toml:"image"`
	// MemoryMiB is the VM's memory (default 512).
	MemoryMiB uint32 `toml:"memory_mib"`
	// VCPUs is the VM's virtual CPU count (default 1).
	VCPUs uint32 `toml:"vcpus"`
	// SizeFromPod adds the pod's containers' CPU and memory limits, as containerd's CRI
	// passes them for the sandbox, to VCPUs and MemoryMiB (default true; WithPodSize).
	SizeFromPod bool `toml:"size_from_pod"`
	// Accel is "auto" (KVM when it really works, else TCG), "kvm" or "tcg".
	Accel string `toml:"accel"`
	// TCGCacheMiB caps QEMU's TCG translation cache, in MiB, when the VM runs under TCG
	// (default hypervisor.DefaultTCGCacheMiB, 64; QEMU's own default grows to 1 GiB).
	TCGCacheMiB uint32 `toml:"tcg_cache_mib"`
	// Machine is the QEMU machine type: "q35" (default) or "microvm".
	Machine string `toml:"machine"`
	// TEE is "none" (default), "snp", "tdx" or "sim".
	TEE string `toml:"tee"`
	// Firmware is the OVMF build that SNP and TDX guests boot from.
	Firmware string `toml:"firmware"`
	// BootTimeout bounds the wait for the agent after the VM starts (default 90s).
	BootTimeout Duration `toml:"boot_timeout"`
	// KernelParams are appended to the guest image's kernel command line.
	KernelParams []string `toml:"kernel_params"`
	// DebugConsole raises the guest's log level and copies the guest console into the
	// shim's log (containerd's log), line by line.
	DebugConsole bool `toml:"debug_console"`
	// ScratchDiskMiB is the size of the pod's scratch disk: a sparse file in ScratchDir,
	// given to the VM as a virtio-blk disk that the guest encrypts (dm-crypt, a key per boot)
	// and keeps the image cache and the containers' roots on instead of RAM (docs/scratch.md).
	// 0: none. Unset: DefaultScratchDiskMiB for a confidential TEE (sim, snp, tdx), 0 for
	// tee none.
	ScratchDiskMiB uint64 `toml:"scratch_disk_mib"`
	// ScratchDir is the host directory of the scratch disks' files (default
	// DefaultScratchDir): on a disk, not a tmpfs, or the guest's data would take host RAM.
	ScratchDir string `toml:"scratch_dir"`
}

// DefaultScratchDiskMiB is the scratch disk size of a confidential pod when the
// configuration sets none: 10 GiB, sparse, so it costs the host only what the guest writes.
const DefaultScratchDiskMiB = 10240

// DefaultScratchDir holds the scratch disks' files.
const DefaultScratchDir = "/var/lib/veil/scratch"

// Runtime holds the shim's own settings.
type Runtime struct {
	// AllowedAnnotations lists the pod annotations (io.veil.config.*) that may override
	// this file; shell patterns ("io.veil.config.hypervisor.*") allowed. Empty: none.
	AllowedAnnotations []string `toml:"allowed_annotations"`
	// InitData is the initdata document (TOML file) of pods that carry none in the
	// io.katacontainers.config.hypervisor.cc_init_data annotation. Empty: none.
	InitData string `toml:"initdata"`
	// GuestPull makes the guest pull each container's image itself (by the digest containerd
	// reports, which the policy pins) instead of sharing containerd's snapshot: the shim
	// sends an image_guest_pull storage with the image's name. The pod's sandbox (pause)
	// container keeps the shared root filesystem. Default false.
	GuestPull bool `toml:"guest_pull"`
}

// Duration is a time.Duration written as "90s" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration ("90s", "2m").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as Go prints it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default is the configuration used when no file exists at the default path.
func Default() *Config {
	return &Config{Hypervisor: Hypervisor{
		Image:       DefaultImageDir,
		MemoryMiB:   hypervisor.DefaultMemoryMiB,
		VCPUs:       hypervisor.DefaultVCPUs,
		SizeFromPod: true,
		Accel:       string(hypervisor.AccelAuto),
		Machine:     hypervisor.DefaultMachine,
		TEE:         string(hypervisor.TEENone),
		BootTimeout: Duration{90 * time.Second},
		ScratchDir:  DefaultScratchDir,
	}}
}

// Resolve picks the configuration file: optionsPath (the runtime options' ConfigPath) first,
// then $VEIL_CONFIG, then DefaultPath.
func Resolve(optionsPath string) string {
	if optionsPath != "" {
		return optionsPath
	}
	if p := os.Getenv(EnvPath); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads the file at path over the defaults and checks it. A missing file is an error,
// except at DefaultPath, where the built-in defaults apply.
func Load(path string) (*Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && path == DefaultPath:
		return c, c.Validate()
	case err != nil:
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if undec := md.Undecoded(); len(undec) > 0 {
		return nil, fmt.Errorf("config %s: unknown key %q: %w", path, undec[0].String(), errdefs.ErrInvalidArgument)
	}
	c.Path = path
	if !md.IsDefined("hypervisor", "scratch_disk_mib") && hypervisor.TEE(c.Hypervisor.TEE) != hypervisor.TEENone {
		c.Hypervisor.ScratchDiskMiB = DefaultScratchDiskMiB
	}
	if c.Runtime.InitData != "" && !filepath.IsAbs(c.Runtime.InitData) {
		c.Runtime.InitData = filepath.Join(filepath.Dir(path), c.Runtime.InitData)
	}
	if c.Hypervisor.Image != "" && !filepath.IsAbs(c.Hypervisor.Image) {
		c.Hypervisor.Image = filepath.Join(filepath.Dir(path), c.Hypervisor.Image)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate checks every key and reports every problem together.
func (c *Config) Validate() error {
	h := c.Hypervisor
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...))
	}
	if h.Image == "" {
		bad("hypervisor.image is empty")
	}
	if h.MemoryMiB < 64 {
		bad("hypervisor.memory_mib %d: want at least 64", h.MemoryMiB)
	}
	if h.VCPUs < 1 || h.VCPUs > 255 {
		bad("hypervisor.vcpus %d: want 1-255", h.VCPUs)
	}
	switch hypervisor.Accel(h.Accel) {
	case hypervisor.AccelAuto, hypervisor.AccelKVM, hypervisor.AccelTCG:
	default:
		bad("hypervisor.accel %q: want auto, kvm or tcg", h.Accel)
	}
	switch h.Machine {
	case "q35", "microvm":
	default:
		bad("hypervisor.machine %q: want q35 or microvm", h.Machine)
	}
	switch hypervisor.TEE(h.TEE) {
	case hypervisor.TEENone, hypervisor.TEESim, hypervisor.TEESNP, hypervisor.TEETDX:
	default:
		bad("hypervisor.tee %q: want none, snp, tdx or sim", h.TEE)
	}
	if h.ScratchDiskMiB > 0 && !filepath.IsAbs(h.ScratchDir) {
		bad("hypervisor.scratch_dir %q: want an absolute path", h.ScratchDir)
	}
	if h.ScratchDiskMiB > 0 && h.ScratchDiskMiB < 64 {
		bad("hypervisor.scratch_disk_mib %d: want 0 (none) or at least 64", h.ScratchDiskMiB)
	}
	if h.BootTimeout.Duration <= 0 {
		bad("hypervisor.boot_timeout %s: want a positive duration", h.BootTimeout)
	}
	for _, p := range c.Runtime.AllowedAnnotations {
		if _, err := filepath.Match(p, ""); err != nil {
			bad("runtime.allowed_annotations: pattern %q: %v", p, err)
		}
	}
	return errors.Join(errs...)
}
