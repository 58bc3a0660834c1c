package sandbox

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/veil-runtime/veil/guest-image/manifest"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/hypervisor/qemu"
)

// Image is a guest image on disk, as veil-image wrote it.
type Image struct {
	Kernel, Initrd string
	Cmdline        []string
	Manifest       *manifest.Manifest
}

// LoadImage reads dir's manifest. It does not re-hash the artefacts: `veil-image verify` and
// the attestation flow check digests; booting a VM must stay cheap.
func LoadImage(dir string) (*Image, error) {
	if dir == "" {
		return nil, fmt.Errorf("no guest image directory given (build one with: veil-image build --out DIR)")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m, err := manifest.Read(dir)
	if err != nil {
		return nil, fmt.Errorf("guest image %s: %w", dir, err)
	}
	return &Image{
		Kernel:   filepath.Join(dir, manifest.KernelFile),
		Initrd:   filepath.Join(dir, manifest.InitrdFile),
		Cmdline:  strings.Fields(m.Cmdline),
		Manifest: m,
	}, nil
}

// newVM picks the driver. QEMU is the only one so far; Cloud Hypervisor will be chosen by the
// runtime handler's config.
func newVM(cfg hypervisor.Config) (hypervisor.VM, error) {
	return qemu.New(cfg)
}
