package payload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/shim/config"
)

const shippedConfig = "../../../shim/config/configuration.toml"

func TestBuild(t *testing.T) {
	in := t.TempDir()
	shim := filepath.Join(in, "shim")
	os.WriteFile(shim, []byte("#!shim\n"), 0o755)
	kernel := filepath.Join(in, "vmlinuz")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	out := filepath.Join(t.TempDir(), "payload")
	m, err := Build(BuildOptions{
		Out:        out,
		Files:      map[string]string{"bin/containerd-shim-veil-v2": shim, "share/veil/image/vmlinuz": kernel},
		BaseConfig: shippedConfig,
		ImageDir:   "/opt/veil/share/veil/image",
		Configs: []ConfigSpec{
			{File: "share/defaults/veil/configuration-veil.toml", Handler: "veil", TEE: "none"},
			{File: "share/defaults/veil/configuration-veil-snp.toml", Handler: "veil-snp", TEE: "snp", GuestPull: true,
				Accel: "kvm", Firmware: "/opt/veil/share/veil/firmware/OVMF-snp.fd"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 4 {
		t.Errorf("manifest %v", m.Paths())
	}
	read, err := Read(out)
	if err != nil || len(read.Files) != 4 || read.Verify(out) != nil {
		t.Fatalf("the written payload does not read back: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(out, "bin/containerd-shim-veil-v2")); fi.Mode().Perm() != 0o755 {
		t.Errorf("shim mode %v", fi.Mode())
	}
	c, err := config.Load(filepath.Join(out, "share/defaults/veil/configuration-veil-snp.toml"))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hypervisor
	if h.TEE != "snp" || h.Accel != "kvm" || h.Firmware != "/opt/veil/share/veil/firmware/OVMF-snp.fd" ||
		h.Image != "/opt/veil/share/veil/image" || !c.Runtime.GuestPull || h.MemoryMiB != 512 {
		t.Errorf("veil-snp configuration: %+v %+v", h, c.Runtime)
	}
	text, _ := os.ReadFile(filepath.Join(out, "share/defaults/veil/configuration-veil.toml"))
	if !strings.HasPrefix(string(text), "# Veil shim configuration of runtime handler \"veil\"") ||
		strings.Contains(string(text), "Installed as /etc/veil") || !strings.Contains(string(text), "guest_pull = false") {
		t.Errorf("veil configuration:\n%s", text)
	}
}

func TestSetKey(t *testing.T) {
	in := "[hypervisor]\n  tee = \"none\" # x\n[runtime]\n"
	got, err := setKey(in, "hypervisor", "tee", `"sim"`)
	if err != nil || got != "[hypervisor]\n  tee = \"sim\"\n[runtime]\n" {
		t.Errorf("replace: %q %v", got, err)
	}
	got, err = setKey(in, "runtime", "guest_pull", "true")
	if err != nil || got != in+"guest_pull = true\n" {
		t.Errorf("add: %q %v", got, err)
	}
	if _, err := setKey(in, "nope", "a", "1"); err == nil {
		t.Error("a missing table was accepted")
	}
}
