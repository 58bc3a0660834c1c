package pod

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/shim/config"
)

func TestScratchRecord(t *testing.T) {
	podDir, scratchDir := t.TempDir(), t.TempDir()
	p := &Pod{VMID: "p-0123456789ab", Dir: podDir}
	h := config.Hypervisor{ScratchDiskMiB: 64, ScratchDir: scratchDir}
	path, err := p.createScratch(h)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(scratchDir, "p-0123456789ab.img") {
		t.Fatalf("scratch file %s", path)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 64<<20 {
		t.Fatalf("scratch file: %v, %v", fi, err)
	}
	if err := removeScratch(podDir, p.VMID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("scratch file left: %v", err)
	}
	if err := removeScratch(podDir, p.VMID); err != nil {
		t.Errorf("second removal: %v", err)
	}

	// No scratch disk configured: no file, no record.
	if path, err := (&Pod{VMID: "q", Dir: t.TempDir()}).createScratch(config.Hypervisor{}); path != "" || err != nil {
		t.Errorf("no scratch configured: %q, %v", path, err)
	}

	// A record that names another file is refused and the file kept.
	victim := filepath.Join(scratchDir, "important")
	if err := os.WriteFile(victim, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(podDir, scratchRecord), []byte(victim+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeScratch(podDir, p.VMID); err == nil || !strings.Contains(err.Error(), "not a scratch disk of this pod") {
		t.Errorf("a record naming another file: %v", err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the file a bad record names was removed: %v", err)
	}
}
