package scratch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/agent/launch"
)

// fakeSys makes a /sys/block with one virtio disk "vdb" of serial serial and returns the
// paths.
func fakeSys(t *testing.T, serial string) launch.Paths {
	t.Helper()
	dir := t.TempDir()
	p := launch.Paths{SysBlock: filepath.Join(dir, "block"), VirtioBus: filepath.Join(dir, "bus"), DevDir: filepath.Join(dir, "dev")}
	for _, d := range []string{p.SysBlock, p.VirtioBus, p.DevDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if serial != "" {
		vd := filepath.Join(p.SysBlock, "vdb")
		if err := os.MkdirAll(vd, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.WriteFile(filepath.Join(vd, "serial"), []byte(serial+"\n"), 0o644)
		_ = os.WriteFile(filepath.Join(vd, "dev"), []byte("254:16\n"), 0o644)
		// A regular file where the node should be: Setup must refuse it.
		_ = os.WriteFile(filepath.Join(p.DevDir, "vdb"), nil, 0o600)
	}
	return p
}

func TestSetupNoDisk(t *testing.T) {
	c := DefaultConfig()
	c.Paths, c.Wait = fakeSys(t, "veil-initdata"), 0
	ok, err := Setup(context.Background(), c)
	if ok || err != nil {
		t.Fatalf("Setup without a scratch disk: %v, %v; want false, nil (RAM as before)", ok, err)
	}
}

func TestSetupBadDisk(t *testing.T) {
	c := DefaultConfig()
	c.Paths, c.Wait = fakeSys(t, "veil-scratch"), 0
	_, err := Setup(context.Background(), c)
	if err == nil || !strings.HasPrefix(err.Error(), "scratch disk") || !strings.Contains(err.Error(), "not block device") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Setup with a disk that is not a block device: %v; want a one-line scratch disk error", err)
	}
	t.Log(err)
}

// TestMkfsArgs: 128-byte inodes, one per 256 KiB, at least 32 Ki (busybox 1.35's mke2fs made
// 40960, about 32 Ki and 16384 inodes of these; it ignores -N).
func TestMkfsArgs(t *testing.T) {
	for _, tt := range []struct {
		bytes uint64
		want  string
	}{
		{2024 << 20, "-F -b 4096 -m 0 -I 128 -i 64512 -L veil-scratch /dev/dm-1"},
		{10121 << 20, "-F -b 4096 -m 0 -I 128 -i 262144 -L veil-scratch /dev/dm-1"},
		{64 << 20, "-F -b 4096 -m 0 -I 128 -i 4096 -L veil-scratch /dev/dm-1"},
	} {
		if got := strings.Join(MkfsArgs("/dev/dm-1", tt.bytes), " "); got != tt.want {
			t.Errorf("MkfsArgs(%d MiB) = %q, want %q", tt.bytes>>20, got, tt.want)
		}
	}
}
