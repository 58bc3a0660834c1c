package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/veil-runtime/veil/attestation/layout"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/initdata"
)

// initDataSuffix names the disk image of a sandbox's initdata, next to its state directory
// (STATE_ROOT/<id>.initdata.img): statedir.Create wants to make the state directory itself,
// so the image, written before the VM starts, cannot live inside it.
const initDataSuffix = ".initdata.img"

// attachInitData checks raw, an initdata document, writes the disk image that delivers it to
// the guest (format: initdata EncodeDisk), attaches it to cfg read-only with the serial
// initdata.DiskSerial, and binds its digest to the launch: SNP HOST_DATA or TDX MRCONFIGID
// (the digest zero-padded or truncated to the field), the sim TEE's host data (at most 48
// bytes). A plain VM (tee none) measures nothing: its digest is returned but not put in the
// config. It returns the image's path and the digest. The caller removes the image.
func attachInitData(cfg *hypervisor.Config, raw []byte) (path string, digest []byte, err error) {
	doc, err := initdata.Parse(raw)
	if err != nil {
		return "", nil, err
	}
	if len(cfg.TEE.HostData) > 0 {
		return "", nil, errors.New("initdata: host data given as well: the initdata digest is the host data")
	}
	img, err := initdata.EncodeDisk(raw)
	if err != nil {
		return "", nil, err
	}
	digest = doc.Digest()
	switch cfg.TEE.Kind {
	case hypervisor.TEESNP, hypervisor.TEETDX:
		cfg.TEE.HostData = initdata.HostData(digest, cfg.TEE.HostDataSize())
	case hypervisor.TEESim:
		cfg.TEE.HostData = initdata.HostData(digest, min(len(digest), layout.TDXMRConfigIDSize))
	}
	path = filepath.Join(filepath.Dir(cfg.StateDir), cfg.ID+initDataSuffix)
	if err := writeImage(path, img); err != nil {
		return "", nil, err
	}
	cfg.Disks = append(cfg.Disks, hypervisor.Disk{Path: path, ReadOnly: true, Serial: initdata.DiskSerial})
	return path, digest, nil
}

// writeImage writes img to path (replacing a leftover of a killed owner), readable by the
// owner only.
func writeImage(path string, img []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return fmt.Errorf("initdata disk: create %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, img, 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("initdata disk: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("initdata disk: rename to %s: %w", path, err)
	}
	return nil
}

// removeInitData removes the disk image at path, if any.
func removeInitData(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove initdata disk: %w", err)
	}
	return nil
}
