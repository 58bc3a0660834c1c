package sandbox

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim/psp"
	"github.com/veil-runtime/veil/guest-image/manifest"
	"github.com/veil-runtime/veil/hypervisor"
)

// TestAttachSimPSP: the PSP disk reports the launch's host data as the host gave it
// (TEE.HostData: the initdata digest, any value, or none) and the launch measurement.
func TestAttachSimPSP(t *testing.T) {
	img := &Image{Manifest: &manifest.Manifest{
		Kernel: manifest.Artifact{SHA384: strings.Repeat("11", 48)},
		Initrd: manifest.Artifact{SHA384: strings.Repeat("22", 48)}}}
	for _, hd := range [][]byte{bytes.Repeat([]byte{0x42}, 48), {0xAB, 0xCD}, nil} {
		root := t.TempDir()
		cfg := hypervisor.Config{ID: "vm1", StateDir: filepath.Join(root, "vm1"), KernelParams: []string{"console=hvc0"},
			TEE: hypervisor.TEEConfig{Kind: hypervisor.TEESim, HostData: hd}}
		path, err := attachSimPSP(&cfg, img)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.KernelParams, []string{"console=hvc0", "veil.tee=sim"}) {
			t.Errorf("kernel parameters %q", cfg.KernelParams)
		}
		want := hypervisor.Disk{Path: filepath.Join(root, "vm1.sim-psp.img"), ReadOnly: true, Serial: psp.DiskSerial}
		if path != want.Path || len(cfg.Disks) != 1 || cfg.Disks[0] != want {
			t.Fatalf("path %s disks %+v, want %+v", path, cfg.Disks, want)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		l, err := psp.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := psp.LaunchMeasurement(strings.Repeat("11", 48), strings.Repeat("22", 48), "console=hvc0 veil.tee=sim")
		if !bytes.Equal(l.HostData, hd) || l.Measurement != m {
			t.Errorf("PSP disk: host data %x measurement %x; want %x and %x", l.HostData, l.Measurement, hd, m)
		}
	}
}
