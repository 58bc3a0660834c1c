package kmod

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const release = "6.12.0-test"

// fakeModule returns a minimal ELF relocatable object whose .modinfo section
// holds the given key=value strings.
func fakeModule(t *testing.T, kv ...string) []byte {
	t.Helper()
	modinfo := []byte(strings.Join(kv, "\x00") + "\x00")
	shstrtab := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	modOff := uint64(ehsize)
	strOff := modOff + uint64(len(modinfo))
	shOff := strOff + uint64(len(shstrtab))
	var buf bytes.Buffer
	hdr := elf.Header64{Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: 1,
		Shoff: shOff, Ehsize: ehsize, Shentsize: shentsize, Shnum: 3, Shstrndx: 2}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS], hdr.Ident[elf.EI_DATA], hdr.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	sections := []elf.Section64{{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: modOff, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstrtab)), Addralign: 1}}
	for _, part := range []any{hdr, modinfo, shstrtab, sections} {
		if err := binary.Write(&buf, binary.LittleEndian, part); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// writeTree makes lib/modules/<release> with the given modules (relative
// path -> depends) and modules.builtin lines; ".xz" and ".gz" paths are
// compressed.
func writeTree(t *testing.T, mods map[string]string, builtin ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", release)
	for rel, deps := range mods {
		base := filepath.Base(rel)
		name := Normalize(base[:strings.Index(base, ".ko")])
		kv := []string{"license=GPL", "name=" + name, "vermagic=" + release + " SMP mod_unload"}
		if deps != "" && deps[0] == '!' {
			kv = append(kv, "softdep="+deps[1:])
			deps = ""
		}
		data := fakeModule(t, append(kv, "depends="+deps)...)
		writeCompressed(t, filepath.Join(dir, rel), data)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(strings.Join(builtin, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeCompressed(t *testing.T, file string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.HasSuffix(file, ".xz"):
		cmd := exec.Command("xz", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("xz not usable: %v (apt-get install xz-utils, make deps)", err)
		}
		data = out
	case strings.HasSuffix(file, ".gz"):
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(data)
		_ = zw.Close()
		data = buf.Bytes()
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolveOrder(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"kernel/net/vsock.ko.xz":                    "",
		"kernel/net/vsock_common.ko.gz":             "vsock",
		"kernel/net/vsock-transport.ko.xz":          "vsock_common,vsock",
		"kernel/fs/overlay.ko":                      "",
		"kernel/drivers/blk.ko":                     "virtio_core,crc",
		"kernel/lib/crc.ko.xz":                      "",
		"kernel/fs/withsoft.ko":                     "!pre: crc missing_soft post: overlay",
		"kernel/drivers/virt/coco/tsm.ko":           "",
		"kernel/drivers/virt/coco/sev-guest.ko.xz":  "tsm",
		"kernel/drivers/virt/coco/unrelated.ko.xz":  "nothing_at_all",
		"kernel/drivers/virt/coco/tdx-guest.ko.zst": "tsm",
	}, "kernel/drivers/virtio/virtio_core.ko", "kernel/fs/fuse/virtiofs.ko")
	tree, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tree.Resolve([]string{"vsock-transport", "overlay", "virtiofs", "blk", "withsoft", "sev_guest", "vsock"})
	if err != nil {
		t.Fatal(err)
	}
	want := "vsock vsock_common vsock_transport overlay crc blk withsoft tsm sev_guest"
	if got := strings.Join(Names(res.Modules), " "); got != want {
		t.Errorf("load order\n got %s\nwant %s", got, want)
	}
	if got := strings.Join(res.Builtin, " "); got != "virtiofs" {
		t.Errorf("builtin = %q, want virtiofs", got)
	}
	for _, m := range res.Modules {
		if !strings.HasSuffix(m.Path, ".ko") || !bytes.HasPrefix(m.Data, []byte(elf.ELFMAG)) {
			t.Errorf("module %s: path %s, data %q...: not decompressed", m.Name, m.Path, m.Data[:4])
		}
	}
	if res.Modules[2].Path != "kernel/net/vsock-transport.ko" {
		t.Errorf("path = %s", res.Modules[2].Path)
	}
}

func TestResolveErrors(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"kernel/a.ko": "b",
		"kernel/b.ko": "c",
		"kernel/c.ko": "a",
		"kernel/d.ko": "nope",
	})
	// A module built for another kernel.
	writeCompressed(t, filepath.Join(dir, "kernel/old.ko"), fakeModule(t, "name=old", "vermagic=5.10.0 SMP"))
	writeCompressed(t, filepath.Join(dir, "kernel/garbage.ko"), []byte("not elf"))
	tree, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mod     string
		wantErr string
	}{
		{"a", "cycle: a -> b -> c -> a"},
		{"d", "nope (needed by d): kernel module not found"},
		{"zzz", "zzz is not in"},
		{"old", `built for kernel "5.10.0", not "6.12.0-test"`},
		{"garbage", "not an ELF kernel module"},
	}
	for _, tt := range tests {
		t.Run(tt.mod, func(t *testing.T) {
			_, err := tree.Resolve([]string{tt.mod})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := tree.Resolve([]string{"zzz"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("err = %v, want ErrNotFound", err)
	}
}

func TestOpenDuplicate(t *testing.T) {
	dir := writeTree(t, map[string]string{"kernel/x/a.ko": "", "kernel/y/a.ko.xz": ""})
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "module a is both") {
		t.Fatalf("err = %v, want a duplicate error", err)
	}
}
