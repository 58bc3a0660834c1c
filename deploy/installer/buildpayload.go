package installer

import (
	"fmt"
	"path/filepath"

	"github.com/veil-runtime/veil/deploy/installer/payload"
)

// PayloadOptions name the files of a payload (`veil-deploy payload`).
type PayloadOptions struct {
	Out         string // the payload directory (in the installer's image: /opt/veil-payload)
	Shim        string // containerd-shim-veil-v2
	Ctl         string // veil-ctl ("" leaves it out)
	Snapshotter string // veil-snapshotter ("" leaves it out: no --snapshotter installs)
	Image       string // the guest image directory (vmlinuz, initrd.img, manifest.json)
	Config      string // the shim's configuration.toml every handler's file derives from
	FirmwareSNP string // OVMF for SNP guests ("" leaves veil-snp out of the payload)
	FirmwareTDX string // OVMF for TDX guests ("" leaves veil-tdx out)
}

// BuildPayload writes a payload: the files, one configuration per handler (veil-snp and
// veil-tdx only with their firmware) and SHA256SUMS.
func BuildPayload(o PayloadOptions) (*payload.Manifest, error) {
	if o.Shim == "" || o.Image == "" || o.Config == "" {
		return nil, fmt.Errorf("payload: --shim, --image and --config are required")
	}
	files := map[string]string{ShimRel: o.Shim}
	if o.Ctl != "" {
		files[CtlRel] = o.Ctl
	}
	if o.Snapshotter != "" {
		files[SnapshotterRel] = o.Snapshotter
	}
	for _, f := range []string{"vmlinuz", "initrd.img", "manifest.json"} {
		files[ImageRel+"/"+f] = filepath.Join(o.Image, f)
	}
	firmware := map[string]string{"snp": o.FirmwareSNP, "tdx": o.FirmwareTDX}
	bo := payload.BuildOptions{Out: o.Out, Files: files, BaseConfig: o.Config, ImageDir: InstallDir + "/" + ImageRel}
	for _, h := range Handlers {
		s := payload.ConfigSpec{File: h.ConfigRel(), Handler: h.Name, TEE: h.TEE, GuestPull: h.GuestPull, Accel: h.Accel}
		if h.Firmware != "" {
			src := firmware[h.TEE]
			if src == "" {
				continue
			}
			files[h.Firmware] = src
			s.Firmware = InstallDir + "/" + h.Firmware
		}
		bo.Configs = append(bo.Configs, s)
	}
	return payload.Build(bo)
}
