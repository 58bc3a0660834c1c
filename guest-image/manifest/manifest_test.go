package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadVerify(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := []byte("kernel"), []byte("initrd")
	writeFile(t, filepath.Join(dir, KernelFile), kernel)
	writeFile(t, filepath.Join(dir, InitrdFile), initrd)
	m := &Manifest{FormatVersion: 1, InputDigest: "d1", Kernel: DescribeBytes(KernelFile, kernel),
		Initrd: DescribeBytes(InitrdFile, initrd), Modules: []string{"/lib/modules/r/a.ko"},
		SimAuthority: &SimAuthority{Path: "/etc/veil/sim-authority.pem", SNPRootsSHA256: "aa", TDXRootSHA256: "bb"}}
	// echo -n kernel | sha384sum
	if want := "e1685b6426d9c5be8691ff8f95eacdc11753355667394aa23124570b14baf68ab322a3aaeb3c599c448ad5016c709a49"; m.Kernel.SHA384 != want {
		t.Errorf("sha384 = %s, want %s", m.Kernel.SHA384, want)
	}
	if got, err := DescribeFile(dir, KernelFile); err != nil || got != m.Kernel {
		t.Errorf("DescribeFile = %+v, %v; want %+v", got, err, m.Kernel)
	}
	writeFile(t, filepath.Join(dir, ManifestFile), m.Encode())
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Encode(), m.Encode()) {
		t.Errorf("manifest did not survive a round trip:\n%s\n%s", got.Encode(), m.Encode())
	}
	if err := got.Verify(dir); err != nil {
		t.Errorf("Verify = %v", err)
	}
	writeFile(t, filepath.Join(dir, InitrdFile), []byte("tampered"))
	if err := m.Verify(dir); err == nil || !strings.Contains(err.Error(), "initrd.img does not match") {
		t.Errorf("Verify after tampering = %v", err)
	}
	os.Remove(filepath.Join(dir, KernelFile))
	if err := m.Verify(dir); err == nil || !strings.Contains(err.Error(), "describing vmlinuz") {
		t.Errorf("Verify without a kernel = %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "reading guest image manifest") {
		t.Errorf("Read of an empty directory = %v", err)
	}
	writeFile(t, filepath.Join(dir, ManifestFile), []byte("{"))
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "parsing guest image manifest") {
		t.Errorf("Read of a broken manifest = %v", err)
	}
}
