// Package containertest builds what tests of the agent's containers need: a busybox root file
// system below the guest's storage root and a runnable OCI spec for it. Creating containers
// needs root and a static busybox (Debian: busybox-static).
package containertest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
)

// Busybox is the static busybox the root file systems are made of.
const Busybox = "/bin/busybox"

// RequireRoot fails t, saying what is missing, unless it runs as root with a static busybox
// at hand (these machines have both: nothing is skipped).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("creating containers needs root: run `go test` as root")
	}
	if _, err := os.Stat(Busybox); err != nil {
		t.Fatal("needs a static " + Busybox + ": apt-get install busybox-static")
	}
}

// Rootfs makes a busybox root file system on the pod's share (api.SharedDir, where the
// agent accepts a spec's root.path from the host), removed when t ends, and returns its path.
func Rootfs(t testing.TB) string {
	t.Helper()
	if err := os.MkdirAll(api.SharedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(api.SharedDir, "ctest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" {
			_ = os.Symlink("busybox", filepath.Join(root, "bin", name))
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// Spec returns runc's example spec (read-only root, its own namespaces, default mounts and
// capabilities) for rootfs running args without a terminal, with PATH=/bin.
func Spec(rootfs string, args ...string) *specs.Spec {
	s := specconv.Example()
	s.Root.Path = rootfs
	s.Process.Args = args
	s.Process.Terminal = false
	s.Process.Env = []string{"PATH=/bin", "TERM=xterm"}
	return s
}

// JSON encodes s.
func JSON(t testing.TB, s *specs.Spec) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
