package payload

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/deploy/installer/internal/atomicfile"
)

// writePayload writes files (relative path -> content; a "bin/" file is executable) and
// their SHA256SUMS.
func writePayload(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	m := &Manifest{}
	for rel, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasPrefix(rel, "bin/") {
			mode = 0o755
		}
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		m.Files = append(m.Files, File{Path: rel, SHA256: atomicfile.Sum([]byte(content))})
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	if err := os.WriteFile(filepath.Join(dir, ManifestName), m.Format(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

var files = map[string]string{
	"bin/containerd-shim-veil-v2":                 "#!shim v1\n",
	"share/veil/image/vmlinuz":                    "kernel",
	"share/veil/image/initrd.img":                 "initrd",
	"share/defaults/veil/configuration-veil.toml": "[hypervisor]\n",
}

// tree lists the regular files under dir with their modes.
func tree(t *testing.T, dir string) map[string]os.FileMode {
	t.Helper()
	out := map[string]os.FileMode{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out[rel] = fi.Mode()
		}
		return nil
	})
	return out
}

func TestParse(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for _, tc := range []struct{ text, wantErr string }{
		{sum + "  bin/x\n" + sum + " *share/y\n# comment\n\n", ""},
		{"", "no file listed"},
		{"abc  bin/x\n", "line 1"},
		{sum + "  /etc/passwd\n", "clean relative path"},
		{sum + "  ../x\n", "clean relative path"},
		{sum + "  a/../../x\n", "clean relative path"},
		{sum + "  SHA256SUMS\n", "clean relative path"},
		{sum + "  a\n" + sum + "  a\n", "listed twice"},
	} {
		m, err := Parse([]byte(tc.text))
		if tc.wantErr == "" {
			if err != nil || len(m.Files) != 2 || m.Files[1].Path != "share/y" {
				t.Errorf("Parse(%q) = %+v, %v", tc.text, m, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Parse(%q): err %v, want %q", tc.text, err, tc.wantErr)
		}
	}
}

func TestInstallTwice(t *testing.T) {
	src := writePayload(t, files)
	dest := filepath.Join(t.TempDir(), "opt", "veil")
	m, err := Read(src)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Install(src, m, dest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Written) != len(files) || !res.Changed() {
		t.Errorf("first install wrote %v", res.Written)
	}
	got := tree(t, dest)
	if len(got) != len(files) {
		t.Errorf("installed %v, want exactly the %d payload files (no temporary file left)", got, len(files))
	}
	if got["bin/containerd-shim-veil-v2"].Perm() != 0o755 || got["share/veil/image/vmlinuz"].Perm() != 0o644 {
		t.Errorf("modes: %v", got)
	}
	res, err = Install(src, m, dest, m.Paths())
	if err != nil || res.Changed() || len(res.Unchanged) != len(files) {
		t.Errorf("second install: %+v, %v; want nothing changed", res, err)
	}
	// An upgrade that drops a file and changes another.
	next := map[string]string{}
	for k, v := range files {
		next[k] = v
	}
	delete(next, "share/veil/image/initrd.img")
	next["bin/containerd-shim-veil-v2"] = "#!shim v2\n"
	src2 := writePayload(t, next)
	m2, _ := Read(src2)
	res, err = Install(src2, m2, dest, m.Paths())
	if err != nil || len(res.Written) != 1 || len(res.Removed) != 1 {
		t.Fatalf("upgrade: %+v, %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "bin/containerd-shim-veil-v2")); string(b) != "#!shim v2\n" {
		t.Errorf("shim not replaced: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dest, "share/veil/image/initrd.img")); !os.IsNotExist(err) {
		t.Error("a file the new payload dropped is still installed")
	}
	removed, err := Remove(dest, m2.Paths())
	if err != nil || len(removed) != len(next) {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("%s left after removing every file: %v", dest, tree(t, dest))
	}
}

// A file whose digest does not match: nothing is installed, and an earlier install stays.
func TestInstallRefusesBadDigest(t *testing.T) {
	src := writePayload(t, files)
	if err := os.WriteFile(filepath.Join(src, "share/veil/image/vmlinuz"), []byte("evil kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, _ := Read(src)
	dest := filepath.Join(t.TempDir(), "veil")
	_, err := Install(src, m, dest, nil)
	if err == nil || !strings.Contains(err.Error(), "share/veil/image/vmlinuz") || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("err = %v, want a refusal naming the file", err)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("something was installed: %v", tree(t, dest))
	}
	good := writePayload(t, files)
	mg, _ := Read(good)
	if _, err := Install(good, mg, dest, nil); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dest)
	if _, err := Install(src, m, dest, mg.Paths()); err == nil {
		t.Fatal("the bad payload was installed over a good one")
	}
	if after := tree(t, dest); len(after) != len(before) {
		t.Errorf("the failed install changed the tree: %v -> %v", before, after)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "share/veil/image/vmlinuz")); string(b) != "kernel" {
		t.Errorf("vmlinuz = %q", b)
	}
}

func TestInstallRefusesMissingAndLinks(t *testing.T) {
	src := writePayload(t, files)
	os.Remove(filepath.Join(src, "share/veil/image/initrd.img"))
	m, _ := Read(src)
	if _, err := Install(src, m, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "initrd.img") {
		t.Errorf("missing file: err %v", err)
	}
	src = writePayload(t, files)
	p := filepath.Join(src, "share/veil/image/initrd.img")
	os.Remove(p)
	os.Symlink("/etc/hostname", p)
	if _, err := Install(src, m, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("symlink: err %v", err)
	}
}

// An image build that lost the execute bits still installs bin/ as executable.
func TestInstallBinIsExecutable(t *testing.T) {
	src := writePayload(t, files)
	os.Chmod(filepath.Join(src, "bin/containerd-shim-veil-v2"), 0o644)
	m, _ := Read(src)
	dest := t.TempDir()
	if _, err := Install(src, m, dest, nil); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dest)["bin/containerd-shim-veil-v2"].Perm(); got != 0o755 {
		t.Errorf("shim mode %v", got)
	}
}
