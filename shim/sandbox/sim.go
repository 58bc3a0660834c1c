package sandbox

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/veil-runtime/veil/attestation/sim/psp"
	"github.com/veil-runtime/veil/hypervisor"
)

// simPSPSuffix names the disk image of a sim sandbox's PSP channel, next to its state
// directory (STATE_ROOT/<id>.sim-psp.img), like the initdata disk.
const simPSPSuffix = ".sim-psp.img"

// attachSimPSP plays the PSP of the simulated TEE (tee sim): it adds veil.tee=sim to the
// kernel command line, computes the launch measurement (psp.LaunchMeasurement of the image's
// kernel and initrd digests and the command line), and delivers it with the launch's host data
// (cfg.TEE.HostData: the padded initdata digest, or zeros) on a read-only virtio-blk disk with
// the serial psp.DiskSerial. It returns the disk image's path; the caller removes it.
func attachSimPSP(cfg *hypervisor.Config, img *Image) (string, error) {
	cfg.KernelParams = append(cfg.KernelParams, psp.KernelParam+"="+psp.KernelParamSim)
	m, err := psp.LaunchMeasurement(img.Manifest.Kernel.SHA384, img.Manifest.Initrd.SHA384, strings.Join(cfg.KernelParams, " "))
	if err != nil {
		return "", fmt.Errorf("tee sim: %w", err)
	}
	l := psp.Launch{HostData: cfg.TEE.HostData, Measurement: m, Policy: cfg.TEE.SNPPolicy}
	disk, err := l.Encode()
	if err != nil {
		return "", fmt.Errorf("tee sim: %w", err)
	}
	path := filepath.Join(filepath.Dir(cfg.StateDir), cfg.ID+simPSPSuffix)
	if err := writeImage(path, disk); err != nil {
		return "", fmt.Errorf("tee sim: %w", err)
	}
	cfg.Disks = append(cfg.Disks, hypervisor.Disk{Path: path, ReadOnly: true, Serial: psp.DiskSerial})
	return path, nil
}

// simPSP loads the image's manifest (for its digests) and attaches the PSP disk.
func simPSP(cfg *hypervisor.Config, opts Options) (string, error) {
	img, err := LoadImage(opts.ImageDir)
	if err != nil {
		return "", err
	}
	return attachSimPSP(cfg, img)
}
