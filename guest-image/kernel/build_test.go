package kernel

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCached: a stored entry is found by its inputs' key; other inputs, an image that no longer
// matches its record, or a half-written entry are not.
func TestCached(t *testing.T) {
	cache := t.TempDir()
	in := Inputs{FormatVersion: FormatVersion, SourceSHA256: strings.Repeat("a", 64), FragmentSHA256: strings.Repeat("b", 64),
		Compiler: "gcc", Linker: "ld", Env: buildEnv}
	if _, ok := Cached(cache, in); ok {
		t.Fatal("an empty cache has an entry")
	}
	image := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(image, []byte("kernel bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Result{Key: in.Key(), Inputs: in, Release: "6.12.95-veil", ConfigSHA256: sha256Hex([]byte("CONFIG_A=y\n"))}
	if err := store(cache, r, image, []byte("CONFIG_A=y\n")); err != nil {
		t.Fatal(err)
	}
	got, ok := Cached(cache, in)
	if !ok || got.Release != r.Release || got.ImageSHA256 != sha256Hex([]byte("kernel bytes")) || got.Image() != filepath.Join(cache, in.Key(), ImageFile) {
		t.Fatalf("Cached after store: %+v, %v", got, ok)
	}
	if b, err := os.ReadFile(got.Config()); err != nil || string(b) != "CONFIG_A=y\n" {
		t.Errorf("cached config: %q, %v", b, err)
	}
	other := in
	other.Compiler = "gcc 13"
	if _, ok := Cached(cache, other); ok {
		t.Error("inputs with another compiler hit the entry")
	}
	if err := os.WriteFile(got.Image(), []byte("other kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := Cached(cache, in); ok {
		t.Error("an entry whose bzImage differs from its record is used")
	}
	if err := os.Remove(filepath.Join(cache, in.Key(), RecordFile)); err != nil {
		t.Fatal(err)
	}
	if _, ok := Cached(cache, in); ok {
		t.Error("an entry without its record is used")
	}
}

// TestConfigure runs Configure with a stand-in for make: allnoconfig writes a base .config and
// olddefconfig plays Kconfig dropping CONFIG_NEEDS_DEP (its dependency is not set). The
// fragment is applied between the two, and the dropped option fails the build by name.
func TestConfigure(t *testing.T) {
	src := t.TempDir()
	mk := func(args ...string) *exec.Cmd {
		script := map[string]string{
			"allnoconfig":  `printf '# CONFIG_A is not set\n# CONFIG_B is not set\nCONFIG_C=y\n' > .config`,
			"olddefconfig": `sed -i 's/^CONFIG_NEEDS_DEP=y$/# CONFIG_NEEDS_DEP is not set/' .config`,
		}[args[0]]
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = src
		return cmd
	}
	config, err := Configure(context.Background(), src, []byte("CONFIG_A=y\n# CONFIG_C is not set\n"), "f.config", mk)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# CONFIG_B is not set\nCONFIG_A=y\n# CONFIG_C is not set\n"; string(config) != want {
		t.Errorf("config:\n%s\nwant:\n%s", config, want)
	}
	_, err = Configure(context.Background(), src, []byte("CONFIG_A=y\nCONFIG_NEEDS_DEP=y\n"), "f.config", mk)
	if err == nil || !strings.Contains(err.Error(), "f.config:2: CONFIG_NEEDS_DEP=y came out as n") {
		t.Errorf("Configure with a dropped option: %v", err)
	}
}
