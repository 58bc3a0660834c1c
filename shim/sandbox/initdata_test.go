package sandbox

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/initdata"
)

func TestAttachInitData(t *testing.T) {
	raw, err := initdata.Marshal("sha384", map[string]string{initdata.KeyPolicy: "package agent_policy\n"})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := initdata.Parse(raw)
	for _, tc := range []struct {
		tee  hypervisor.TEE
		want []byte
	}{
		{hypervisor.TEENone, nil},
		{hypervisor.TEESNP, doc.Digest()[:32]},
		{hypervisor.TEETDX, doc.Digest()},
		{hypervisor.TEESim, doc.Digest()},
	} {
		root := t.TempDir()
		cfg := hypervisor.Config{ID: "vm1", StateDir: filepath.Join(root, "vm1"), TEE: hypervisor.TEEConfig{Kind: tc.tee}}
		path, digest, err := attachInitData(&cfg, raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.tee, err)
		}
		if !bytes.Equal(digest, doc.Digest()) || !bytes.Equal(cfg.TEE.HostData, tc.want) {
			t.Errorf("%s: digest %x host data %x, want %x and %x", tc.tee, digest, cfg.TEE.HostData, doc.Digest(), tc.want)
		}
		want := hypervisor.Disk{Path: filepath.Join(root, "vm1.initdata.img"), ReadOnly: true, Serial: initdata.DiskSerial}
		if path != want.Path || len(cfg.Disks) != 1 || cfg.Disks[0] != want {
			t.Fatalf("%s: path %s disks %+v, want %+v", tc.tee, path, cfg.Disks, want)
		}
		img, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := initdata.DecodeDisk(img); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%s: the disk holds %q, %v", tc.tee, got, err)
		}
		if err := removeInitData(path); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s: image not removed: %v", tc.tee, err)
		}
	}
	cfg := hypervisor.Config{ID: "vm1", StateDir: filepath.Join(t.TempDir(), "vm1")}
	if _, _, err := attachInitData(&cfg, []byte("version = 1")); err == nil || !strings.Contains(err.Error(), "initdata: version") {
		t.Errorf("a bad document: %v", err)
	}
	cfg.TEE = hypervisor.TEEConfig{Kind: hypervisor.TEESNP, HostData: []byte{1}}
	if _, _, err := attachInitData(&cfg, raw); err == nil || !strings.Contains(err.Error(), "host data given") {
		t.Errorf("initdata and host data both: %v", err)
	}
}
