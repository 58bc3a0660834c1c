// Package guestimage builds the guest boot artefacts of a Veil VM, a kernel
// (vmlinuz) and an initrd (initrd.img), and describes them in a manifest
// (sizes, SHA-256 and SHA-384 digests, kernel command line, modules).
//
// The kernel is Debian's cloud kernel from bookworm-backports, a
// confidential-guest kernel (SEV-SNP and TDX guest support). The lock file
// (image.lock, type Lock) pins it and the guest's mke2fs package by pool file
// and SHA-256; a build fetches exactly those files from the mirror's pool (or
// the cache) and unpacks them, never installs them. `veil-image lock --update`
// moves the lock with a private apt set-up under the cache directory. The initrd holds only /init (the agent, or any static binary),
// the kernel modules the guest needs (decompressed, listed in load order in
// /etc/veil/modules.list), /etc/veil/image.json, a few empty directories and
// the /dev/console and /dev/null nodes. It is written as a reproducible newc
// cpio and gzip: the same inputs give the same bytes.
//
// Builds are cached: the manifest records a digest of every input, and a
// build whose output directory already holds a manifest with that digest
// does nothing.
package guestimage

import (
	"io"
	"strings"

	"github.com/veil-runtime/veil/guest-image/kernel"
)

// FormatVersion is the version of the builder's output format. It is part
// of the input digest: raise it whenever a change to the builder changes the
// bytes it writes for the same inputs.
const FormatVersion = 3

// DefaultCacheDir keeps the apt state, the downloaded kernel packages and
// the unpacked kernels between builds.
const DefaultCacheDir = "/var/cache/veil/image"

// KernelSuite is the Debian suite the kernel comes from.
const KernelSuite = "bookworm-backports"

// KernelPackagePattern matches the names of Debian's 6.12 cloud kernels in
// bookworm-backports, e.g. linux-image-6.12.95+deb12-cloud-amd64 (it leaves
// out the -unsigned and -dbg packages). Without a pinned package the build
// takes the newest version of any package it matches.
const KernelPackagePattern = `^linux-image-6\.12\.[0-9]+\+[a-z0-9.]+-cloud-amd64$`

// KernelSourcePackage is the source package of the 6.12 series, locked at the kernel's
// version: the veil kernel is built from it (package kernel).
const KernelSourcePackage = "linux-source-6.12"

// DefaultModules are the kernel modules the guest loads at boot, before
// their dependencies are added. Debian's cloud kernel builds in virtio-pci,
// virtio-console (the virtio-serial agent transport), virtio-fs and the
// 8250 serial console, so only these are modules:
//
//   - vmw_vsock_virtio_transport: the vsock agent transport (AF_VSOCK over
//     virtio); it pulls in vsock and vmw_vsock_virtio_transport_common.
//   - overlay: overlayfs, for container root filesystems.
//   - virtio_blk: virtio block devices (CONFIG_VIRTIO_BLK=m), for initdata,
//     block-device storage and guest-pulled image layers on a disk.
//   - virtio_net: the pod's network interface (the shim's tap).
//   - bridge: for privileged containers that make bridges (critest's capability test);
//     pulls in stp and llc.
//   - dm_crypt, xts, aesni_intel: the encrypted scratch disk (agent/scratch, docs/scratch.md):
//     device-mapper's crypt target (pulls in dm_mod), the XTS mode, and AES-NI (the generic
//     AES is built in; aesni_intel is much faster where the CPU has AES-NI, and pulls in
//     crypto_simd and cryptd). ext4 is built in.
//   - dm_integrity, authenc, sha256_ssse3: the scratch disk's integrity: dm-integrity stores
//     the per-sector tags (pulls in dm_bufio, async_xor, xor, async_tx), authenc is the
//     template of dm-crypt's authenc(hmac(sha256),xts(aes)) (hmac and the generic sha256 are
//     built in), and sha256_ssse3 is the SSSE3/AVX2/SHA-NI SHA-256 the kernel prefers where
//     the CPU has them. The guest has no modprobe, so the crypto API cannot load a template on
//     demand: each must be loaded at boot.
//
// ConfidentialModules are not in this list. The veil kernel (Options.Kernel) builds all of
// these in, and the confidential-guest drivers too: its images load no modules.
var DefaultModules = []string{"vmw_vsock_virtio_transport", "overlay", "virtio_blk", "virtio_net", "bridge",
	"dm_crypt", "xts", "aesni_intel", "dm_integrity", "authenc", "sha256_ssse3"}

// ConfidentialModules are the modules a guest on real TEE hardware needs to
// get attestation reports: the SEV-SNP guest driver (/dev/sev-guest) and the
// TDX guest driver; both pull in tsm (configfs-tsm reports) and configfs. They are
// modules in Debian's kernel (CONFIG_SEV_GUEST=m, CONFIG_TDX_GUEST_DRIVER=m,
// CONFIG_TSM_REPORTS=m). Add them to Options.Modules for snp/tdx images; on
// a machine without that TEE their loading fails, which the agent reports
// as a warning.
var ConfidentialModules = []string{"sev-guest", "tdx-guest"}

// cmdlineOptions is DefaultCmdline, one option per entry with its reason.
var cmdlineOptions = []struct{ option, why string }{
	{"console=ttyS0", "kernel messages and the panic reason go to the first serial port, which every Veil VM has"},
	{"quiet", "print only warnings and errors: a serial console is slow, and slower under emulation"},
	{"panic=-1", "on a panic reboot at once instead of hanging; with QEMU's -no-reboot the VM then exits"},
	{"reboot=t", "reboot by triple fault: immediate, needs no ACPI or keyboard controller"},
	{"no_timer_check", "skip the IO-APIC timer check, slow and error-prone in an emulated or overcommitted VM"},
	{"tsc=reliable", "trust the TSC and skip the clocksource watchdog: its checks take time and misfire in VMs; SNP and TDX guests use the TSC as their trusted clock"},
	{"random.trust_cpu=on", "seed the kernel's random generator from RDRAND/RDSEED at once, so the agent's TLS and keys never wait for entropy; in a TEE the CPU is trusted and the host is not"},
	{"i8042.noaux", "do not probe a PS/2 mouse: a VM has none, and probing the emulated controller costs boot time"},
	{"i8042.nopnp", "do not look for the PS/2 controller in ACPI/PnP tables"},
	{"i8042.dumbkbd", "do not query the PS/2 keyboard"},
	{"cryptomgr.notests", "skip the crypto algorithms' boot self-tests, the largest boot cost (about 0.3 s of 1.8 s under TCG); they guard against broken implementations, not against the host, and fips=1 would run them regardless"},
	{"rcupdate.rcu_expedited=1", "expedited RCU grace periods: boot waits on many of them (about 0.1 s under TCG); their IPI cost is nothing with a few vCPUs"},
}

// DefaultCmdline is the kernel command line recorded in the manifest, for
// the hypervisor driver to pass to the kernel. Each option's reason is in
// cmdlineOptions. It leaves KASLR on: nothing in a Veil guest needs the
// kernel at a fixed address.
var DefaultCmdline = func() string {
	opts := make([]string, len(cmdlineOptions))
	for i, o := range cmdlineOptions {
		opts[i] = o.option
	}
	return strings.Join(opts, " ")
}()

// Options say what to build and where. Only OutDir and one of Agent or Init
// are required.
type Options struct {
	// OutDir receives vmlinuz, initrd.img and manifest.json. Required.
	OutDir string
	// Agent is the path of the (static) guest agent binary. When Init is a
	// different binary, the agent is installed at api.AgentPath for init to start.
	Agent string
	// Init is the path of the static binary that becomes /init; empty means
	// Agent. Veil's image has veil-init here; a benchmark sets a trivial init.
	Init string
	// CacheDir keeps apt state, kernel packages and unpacked kernels; empty
	// means DefaultCacheDir.
	CacheDir string
	// Kernel is the kernel the image boots: kernel.Debian (empty), Debian's cloud kernel
	// package, or kernel.Veil, Veil's own built from the locked source package with
	// KernelFragment (slow the first time; cached under CacheDir/veil-kernel).
	Kernel kernel.Kind
	// KernelFragment is the veil kernel's config fragment; nil means kernel.Fragment, the one
	// veil-image was built with. KernelFile names it in errors (default kernel.FragmentFile).
	KernelFragment []byte
	KernelFile     string
	// Lock pins the kernel and mkfs packages (and records the guest binaries' Go
	// toolchain); nil means DefaultLock, the lock file veil-image was built with.
	Lock *Lock
	// LockName names the lock file in errors and progress; empty means LockFile.
	LockName string
	// Modules are the kernel modules to load at boot; their dependencies are
	// added. Nil means DefaultModules for Debian's kernel and none for the veil
	// kernel, which has no modules; modules the kernel has built in are skipped.
	Modules []string
	// Cmdline is the kernel command line for the manifest; empty means
	// DefaultCmdline.
	Cmdline string
	// ImageVersion is a free-form label written to /etc/veil/image.json;
	// empty means "dev".
	ImageVersion string
	// Mirror is the Debian archive to fetch from; empty means the one the
	// host's apt sources use (deb.debian.org when they name none).
	Mirror string
	// SimAuthority is a sim authority file (veil-image sim-authority) to put into the initrd,
	// which makes the image able to boot as a sim guest; empty means none.
	SimAuthority string
	// Force rebuilds even when OutDir already holds the same build.
	Force bool
	// Progress receives one line per step, for a person watching; nil
	// discards it.
	Progress io.Writer
}

// withDefaults returns a copy of o with every empty field set to its
// default.
func (o Options) withDefaults() Options {
	if o.Init == "" {
		o.Init = o.Agent
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.Kernel == "" {
		o.Kernel = kernel.Debian
	}
	if o.Modules == nil {
		o.Modules = DefaultModules
		if o.Kernel == kernel.Veil {
			o.Modules = []string{}
		}
	}
	if o.KernelFragment == nil {
		o.KernelFragment = kernel.Fragment
	}
	if o.Cmdline == "" {
		o.Cmdline = DefaultCmdline
	}
	if o.ImageVersion == "" {
		o.ImageVersion = "dev"
	}
	if o.LockName == "" {
		o.LockName = LockFile
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}
