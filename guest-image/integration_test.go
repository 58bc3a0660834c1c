package guestimage

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The integration tests fetch the real kernel from the Debian mirror the
// host uses. They share one cache directory: VEIL_IMAGE_TEST_CACHE, or a
// temporary directory removed at the end.

var (
	cacheOnce sync.Once
	cacheDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cacheDir != "" && os.Getenv("VEIL_IMAGE_TEST_CACHE") == "" {
		os.RemoveAll(cacheDir)
	}
	os.Exit(code)
}

// integration fails the test when a tool it needs is missing, saying what to
// install, and returns the shared cache directory. The tests that call it fetch
// the kernel from the host's Debian mirror.
func integration(t *testing.T) string {
	t.Helper()
	for tool, pkg := range map[string]string{"apt-get": "apt", "dpkg-deb": "dpkg", "xz": "xz-utils"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: apt-get install %s (make deps)", tool, pkg)
		}
	}
	cacheOnce.Do(func() {
		if cacheDir = os.Getenv("VEIL_IMAGE_TEST_CACHE"); cacheDir == "" {
			var err error
			if cacheDir, err = os.MkdirTemp("", "veil-image-cache-"); err != nil {
				t.Fatal(err)
			}
		}
	})
	return cacheDir
}

// build runs Build with the test defaults and returns the manifest and the
// progress it printed.
func build(t *testing.T, o Options) (*Manifest, string) {
	t.Helper()
	var out bytes.Buffer
	o.CacheDir, o.Progress = integration(t), &out
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	m, err := Build(ctx, o)
	t.Logf("progress:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	return m, out.String()
}

// busybox returns a static binary to use as /init.
func busybox(t *testing.T) string {
	t.Helper()
	bin := staticBinary(t)
	if bin == "" {
		t.Fatal("needs a static busybox as the test init: apt-get install busybox-static (make deps)")
	}
	return bin
}

func TestIntegrationBuildReproducible(t *testing.T) {
	init := busybox(t)
	a, b := t.TempDir(), t.TempDir()
	m1, _ := build(t, Options{OutDir: a, Init: init})
	m2, _ := build(t, Options{OutDir: b, Init: init})
	if !bytes.Equal(m1.Encode(), m2.Encode()) {
		t.Fatalf("two builds of the same inputs differ:\n%s\n%s", m1.Encode(), m2.Encode())
	}
	for _, f := range []string{KernelFile, InitrdFile, ManifestFile} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between the builds (or is empty)", f)
		}
	}
	if err := m1.Verify(a); err != nil {
		t.Error(err)
	}
	checkManifest(t, m1)
	m3, progress := build(t, Options{OutDir: a, Init: init})
	if !strings.Contains(progress, "nothing to do") || m3.InputDigest != m1.InputDigest {
		t.Errorf("a third build into the same directory was not skipped")
	}
}

// checkManifest checks what the default build must contain.
func checkManifest(t *testing.T, m *Manifest) {
	t.Helper()
	if !strings.HasPrefix(m.KernelRelease, "6.12.") || !strings.HasSuffix(m.KernelRelease, "-cloud-amd64") {
		t.Errorf("kernel release %q", m.KernelRelease)
	}
	if !strings.HasPrefix(m.KernelPackage.Name, "linux-image-6.12.") || len(m.KernelPackage.SHA256) != 64 {
		t.Errorf("kernel package %+v", m.KernelPackage)
	}
	var names []string
	for _, p := range m.Modules {
		if !strings.HasPrefix(p, "/lib/modules/"+m.KernelRelease+"/kernel/") || !strings.HasSuffix(p, ".ko") {
			t.Errorf("module path %q", p)
		}
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".ko"))
	}
	want := "vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport overlay virtio_blk failover net_failover virtio_net llc stp bridge" +
		" dm-mod dm-crypt xts cryptd crypto_simd gf128mul aesni-intel dm-bufio xor async_tx async_xor dm-integrity authenc sha256-ssse3"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("modules in load order: %s, want %s", got, want)
	}
	if m.MkfsPackage == nil || m.MkfsPackage.Name != MkfsPackage || m.MkfsPackage.Version != testLock(t).Mkfs.Version || len(m.MkfsPackage.SHA256) != 64 {
		t.Errorf("mkfs package %+v: want %s=%s", m.MkfsPackage, MkfsPackage, testLock(t).Mkfs.Version)
	}
	if m.Cmdline != DefaultCmdline || len(m.Initrd.SHA384) != 96 || len(m.Kernel.SHA256) != 64 {
		t.Errorf("manifest %s", m.Encode())
	}
}

func TestIntegrationChangedInit(t *testing.T) {
	init := busybox(t)
	data, err := os.ReadFile(init)
	if err != nil {
		t.Fatal(err)
	}
	// The same program with one more byte after its end: still a valid ELF.
	other := filepath.Join(t.TempDir(), "init")
	writeTestFile(t, other, append(data, 0))
	m1, _ := build(t, Options{OutDir: t.TempDir(), Init: init})
	m2, _ := build(t, Options{OutDir: t.TempDir(), Init: other})
	if m1.Initrd.SHA256 == m2.Initrd.SHA256 || m1.InputDigest == m2.InputDigest || m1.InitSHA256 == m2.InitSHA256 {
		t.Error("a different init gave the same initrd or input digest")
	}
	if m1.Kernel != m2.Kernel || m1.KernelPackage != m2.KernelPackage {
		t.Error("a different init changed the kernel")
	}
}

func TestIntegrationConfidentialModules(t *testing.T) {
	mods := append(append([]string{}, DefaultModules...), ConfidentialModules...)
	mods = append(mods, "virtiofs") // built in: skipped
	m, progress := build(t, Options{OutDir: t.TempDir(), Init: busybox(t), Modules: mods})
	var names []string
	for _, p := range m.Modules {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".ko"))
	}
	want := "vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport overlay virtio_blk failover net_failover virtio_net llc stp bridge dm-mod dm-crypt xts cryptd crypto_simd gf128mul aesni-intel dm-bufio xor async_tx async_xor dm-integrity authenc sha256-ssse3 configfs tsm sev-guest tdx-guest"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("modules in load order: %s, want %s", got, want)
	}
	if m.MkfsPackage == nil || m.MkfsPackage.Name != MkfsPackage || m.MkfsPackage.Version != testLock(t).Mkfs.Version {
		t.Errorf("manifest's mkfs package %+v: want %s=%s", m.MkfsPackage, MkfsPackage, testLock(t).Mkfs.Version)
	}
	if !strings.Contains(progress, "built in, skipped: virtiofs") {
		t.Error("the built-in virtiofs was not reported as skipped")
	}
}
