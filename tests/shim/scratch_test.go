//go:build e2e

package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/veil-runtime/veil/shim/pod"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// scratchConfig makes the Veil config give every VM a 1 GiB scratch disk in a directory of
// the test's (until the test ends) and returns that directory.
func scratchConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := containerdenv.VeilConfig(imageDir) + fmt.Sprintf("scratch_disk_mib = 1024\nscratch_dir = %q\n", dir)
	if err := os.WriteFile(env.Path("veil.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := containerdenv.WriteVeilConfig(env.Path("veil.toml"), imageDir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// checkScratchFile fails unless the pod's scratch file is there: 1 GiB, the owner's only,
// sparse, and written to (the guest encrypted and formatted it).
func checkScratchFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the pod's scratch disk file: %v", err)
	}
	used := fi.Sys().(*syscall.Stat_t).Blocks * 512
	if fi.Size() != 1<<30 || fi.Mode().Perm() != 0o600 || used == 0 || used > 256<<20 {
		t.Fatalf("scratch file %s: %d bytes, mode %v, %d bytes allocated; want 1 GiB, 0600, sparse and written to",
			path, fi.Size(), fi.Mode().Perm(), used)
	}
	t.Logf("scratch file %s: %d KiB allocated of 1 GiB", path, used>>10)
}

// checkNoScratch fails unless dir is empty within d.
func checkNoScratch(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	var left []string
	if !waitFor(d, func() bool { left, _ = filepath.Glob(filepath.Join(dir, "*")); return len(left) == 0 }) {
		t.Errorf("scratch files left after the pod: %v", left)
	}
}

// TestScratchDiskLifecycle: a VM configured with a scratch disk gets a sparse file of its own,
// which goes with the pod, whether the pod ends normally or its shim is killed (the next
// shim's delete cleans up).
func TestScratchDiskLifecycle(t *testing.T) {
	dir := scratchConfig(t)

	t.Run("stop", func(t *testing.T) {
		id := uniqueID(t, "c")
		detached(t, id, "sleep 1000")
		checkScratchFile(t, filepath.Join(dir, vmOf(id)+".img"))
		removeContainer(t, id)
		checkNoScratch(t, dir, 10*time.Second)
	})

	t.Run("shim killed", func(t *testing.T) {
		id := uniqueID(t, "c")
		detached(t, id, "sleep 1000")
		vm := vmOf(id)
		checkScratchFile(t, filepath.Join(dir, vm+".img"))
		shims := shimPIDs(id)
		if len(shims) != 1 {
			t.Fatalf("shims %v: want one", shims)
		}
		if err := syscall.Kill(shims[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if !waitFor(20*time.Second, func() bool { return len(qemuPIDs(vm)) == 0 }) {
			t.Fatalf("QEMU %v still runs after the shim was killed", qemuPIDs(vm))
		}
		// A SIGKILLed shim removes nothing: what removes the file is the delete path, either
		// containerd's own clean-up of a dead shim (it runs `shim delete` as soon as it sees
		// the shim gone, which may already have happened) or the delete below.
		if _, err := os.Stat(filepath.Join(dir, vm+".img")); err != nil {
			t.Logf("the scratch file went with containerd's clean-up of the dead shim (shim delete): %v", err)
		}
		removeContainer(t, id)
		checkNoScratch(t, dir, 10*time.Second)
		// The delete removes the scratch file first, then the pod's cgroup and directory; the
		// delete that containerd runs for a dead shim may still be at work.
		if !waitFor(10*time.Second, func() bool { _, err := os.Stat(pod.DirOf(vm)); return os.IsNotExist(err) }) {
			t.Errorf("%s left behind", pod.DirOf(vm))
		}
	})
}
