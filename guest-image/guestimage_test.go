package guestimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/guest-image/kernel"
	"github.com/veil-runtime/veil/guest-image/kmod"
	"github.com/veil-runtime/veil/guest-image/manifest"
)

func TestDefaultCmdline(t *testing.T) {
	for _, want := range []string{"console=ttyS0", "quiet", "panic=-1", "reboot=t"} {
		if !strings.Contains(" "+DefaultCmdline+" ", " "+want+" ") {
			t.Errorf("DefaultCmdline %q lacks %q", DefaultCmdline, want)
		}
	}
	if strings.Contains(DefaultCmdline, "nokaslr") {
		t.Error("DefaultCmdline turns KASLR off")
	}
	for _, o := range cmdlineOptions {
		if o.why == "" || strings.ContainsAny(o.option, " \t") {
			t.Errorf("option %q: needs one word and a reason", o.option)
		}
	}
}

func TestInputsDigest(t *testing.T) {
	base := Inputs{FormatVersion: 1, InitSHA256: "aa", KernelDebSHA256: "bb", Modules: []string{"overlay"},
		Cmdline: "console=ttyS0", ImageVersion: "dev"}
	d := base.Digest()
	if len(d) != 64 || d != base.Digest() {
		t.Fatalf("digest %q is not a stable hex SHA-256", d)
	}
	changes := map[string]func(in *Inputs){
		"format":  func(in *Inputs) { in.FormatVersion = 2 },
		"init":    func(in *Inputs) { in.InitSHA256 = "ab" },
		"kernel":  func(in *Inputs) { in.KernelDebSHA256 = "bc" },
		"modules": func(in *Inputs) { in.Modules = []string{"overlay", "virtio_blk"} },
		"cmdline": func(in *Inputs) { in.Cmdline = "console=hvc0" },
		"version": func(in *Inputs) { in.ImageVersion = "1.0" },
		"sim":     func(in *Inputs) { in.SimAuthoritySHA256 = "cd" },
		"kind":    func(in *Inputs) { in.Kernel = "veil" },
		"build":   func(in *Inputs) { in.KernelBuild = "de" },
	}
	for name, change := range changes {
		in := base
		change(&in)
		if in.Digest() == d {
			t.Errorf("changing %s does not change the digest", name)
		}
	}
}

// TestVeilKernelModules: the veil kernel has no modules; by default an image of it loads none,
// and asking for some is refused (before anything is fetched) naming them.
func TestVeilKernelModules(t *testing.T) {
	if m := (Options{Kernel: kernel.Veil}).withDefaults().Modules; m == nil || len(m) != 0 {
		t.Errorf("default modules of the veil kernel: %q, want none", m)
	}
	if m := (Options{}).withDefaults().Modules; len(m) != len(DefaultModules) {
		t.Errorf("default modules of Debian's kernel: %q, want DefaultModules", m)
	}
	_, err := Build(context.Background(), Options{OutDir: t.TempDir(), Init: busybox(t), CacheDir: t.TempDir(), Kernel: kernel.Veil,
		Modules: []string{"overlay"}, Mirror: "http://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "the veil kernel has no modules") || !strings.Contains(err.Error(), "overlay") {
		t.Errorf("Build of the veil kernel with modules: %v", err)
	}
}

// TestUpToDate checks the build cache's test; the manifest itself is tested in
// guest-image/manifest.
func TestUpToDate(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := []byte("kernel"), []byte("initrd")
	writeTestFile(t, filepath.Join(dir, KernelFile), kernel)
	writeTestFile(t, filepath.Join(dir, InitrdFile), initrd)
	m := &Manifest{FormatVersion: FormatVersion, InputDigest: "d1", Kernel: manifest.DescribeBytes(KernelFile, kernel),
		Initrd: manifest.DescribeBytes(InitrdFile, initrd), Modules: []string{"/lib/modules/r/a.ko"}}
	writeTestFile(t, filepath.Join(dir, ManifestFile), m.Encode())
	got, err := ReadManifest(dir)
	if err != nil || !bytes.Equal(got.Encode(), m.Encode()) {
		t.Fatalf("ReadManifest = %v", err)
	}
	if _, ok := upToDate(dir, "d1"); !ok {
		t.Error("upToDate = false for matching inputs")
	}
	if _, ok := upToDate(dir, "d2"); ok {
		t.Error("upToDate = true for other inputs")
	}
	writeTestFile(t, filepath.Join(dir, InitrdFile), []byte("tampered"))
	if _, ok := upToDate(dir, "d1"); ok {
		t.Error("upToDate = true with a changed initrd")
	}
}

func TestBuildInitrd(t *testing.T) {
	spec := initrdSpec{init: []byte("\x7fELF-init"), release: "6.12.0-test",
		modules: []kmod.Module{{Name: "vsock", Path: "kernel/net/vsock.ko", Data: []byte("v")},
			{Name: "vmw_vsock_virtio_transport", Path: "kernel/net/vmw_vsock_virtio_transport.ko", Data: []byte("t")}},
		info: ImageInfo{KernelRelease: "6.12.0-test", ImageVersion: "dev", InputDigest: "abc"}}
	gz, paths, _, err := buildInitrd(spec)
	if err != nil {
		t.Fatal(err)
	}
	again, _, _, _ := buildInitrd(spec)
	if !bytes.Equal(gz, again) {
		t.Fatal("two builds of the same initrd differ")
	}
	// gzip header: magic, deflate, no flags (no name), mtime 0.
	if !bytes.HasPrefix(gz, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}) {
		t.Errorf("gzip header % x", gz[:10])
	}
	wantPaths := "/lib/modules/6.12.0-test/kernel/net/vsock.ko\n/lib/modules/6.12.0-test/kernel/net/vmw_vsock_virtio_transport.ko\n"
	if joinLines(paths) != wantPaths {
		t.Errorf("module paths %q", paths)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() && zr.ModTime.Unix() != 0 {
		t.Errorf("gzip header name %q mtime %v", zr.Name, zr.ModTime)
	}
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Fatal("GNU cpio not installed: apt-get install cpio (make deps)")
	}
	list := cpioRun(t, gz, "-t")
	want := "dev dev/console dev/null etc etc/veil etc/veil/image.json etc/veil/modules.list init lib lib/modules " +
		"lib/modules/6.12.0-test lib/modules/6.12.0-test/kernel lib/modules/6.12.0-test/kernel/net " +
		"lib/modules/6.12.0-test/kernel/net/vmw_vsock_virtio_transport.ko lib/modules/6.12.0-test/kernel/net/vsock.ko " +
		"proc run sys tmp"
	if got := strings.Join(strings.Fields(list), " "); got != want {
		t.Errorf("initrd holds\n%s\nwant\n%s", got, want)
	}
	if got := cpioRun(t, gz, "-i", "--to-stdout", "etc/veil/modules.list"); got != wantPaths {
		t.Errorf("modules.list = %q", got)
	}
	if got := cpioRun(t, gz, "-i", "--to-stdout", "etc/veil/image.json"); !strings.Contains(got, `"kernelRelease": "6.12.0-test"`) {
		t.Errorf("image.json = %q", got)
	}

	// With an agent of its own, it goes to AgentPath beside /init.
	spec.agent = []byte("\x7fELF-agent")
	gz, _, _, err = buildInitrd(spec)
	if err != nil {
		t.Fatal(err)
	}
	if got := cpioRun(t, gz, "-i", "--to-stdout", "usr/bin/veil-agent"); got != "\x7fELF-agent" {
		t.Errorf("usr/bin/veil-agent holds %q", got)
	}
	if got := cpioRun(t, gz, "-i", "--to-stdout", "init"); got != "\x7fELF-init" {
		t.Errorf("init holds %q", got)
	}

	// A sim authority goes to sim.GuestAuthorityPath, readable by root only.
	spec.simAuthority = []byte("authority")
	if gz, _, _, err = buildInitrd(spec); err != nil {
		t.Fatal(err)
	}
	if got := cpioRun(t, gz, "-i", "--to-stdout", "etc/veil/sim-authority.pem"); got != "authority" {
		t.Errorf("sim authority holds %q", got)
	}
	if list := cpioRun(t, gz, "-tv", "etc/veil/sim-authority.pem"); !strings.HasPrefix(list, "-rw-------") {
		t.Errorf("sim authority mode: %s", list)
	}
}

// cpioRun runs GNU cpio on the decompressed archive and returns its output.
func cpioRun(t *testing.T, gz []byte, args ...string) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("cpio", append(args, "--quiet")...)
	cmd.Stdin, cmd.Stderr = zr, &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio %v: %v: %s", args, err, stderr.String())
	}
	return string(out)
}

func TestReadInit(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	writeTestFile(t, notELF, []byte("#!/bin/sh\n"))
	tests := []struct {
		file    string
		wantErr string
	}{
		{"", "no init binary"},
		{filepath.Join(dir, "missing"), "no such file"},
		{notELF, "not an ELF executable"},
		{"/bin/ls", "dynamically linked"},
	}
	for _, tt := range tests {
		_, err := readInit(tt.file)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("readInit(%q) = %v, want %q", tt.file, err, tt.wantErr)
		}
	}
	if bin := staticBinary(t); bin != "" {
		if _, err := readInit(bin); err != nil {
			t.Errorf("readInit(%s): %v", bin, err)
		}
	}
}

func TestIndentWriter(t *testing.T) {
	var buf bytes.Buffer
	w := (&progress{w: &buf}).indented()
	for _, s := range []string{"Get:1 a", "\nGet:2", " b\r\nFetched\n"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	want := "          | Get:1 a\n          | Get:2 b\n          | Fetched\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

// staticBinary returns busybox-static's binary, or "" when it is missing.
func staticBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := readInit(p); err == nil {
			return p
		}
	}
	return ""
}

func writeTestFile(t *testing.T, file string, data []byte) {
	t.Helper()
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testLock is the lock file built into the package (image.lock).
func testLock(t testing.TB) *Lock {
	t.Helper()
	l, err := DefaultLock()
	if err != nil {
		t.Fatal(err)
	}
	return l
}
