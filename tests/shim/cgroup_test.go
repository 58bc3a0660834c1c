//go:build e2e

package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
)

// v1Cgroups maps each v1 hierarchy's directory under /sys/fs/cgroup ("memory", "systemd")
// to a process's cgroup in it.
func v1Cgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[strings.TrimPrefix(c, "name=")] = parts[2]
		}
	}
	if out["memory"] == "" {
		t.Fatalf("pid %d has no memory cgroup:\n%s", pid, data)
	}
	return out
}

// TestShimCgroup (issue 16) with ctr: the shim and QEMU of a plain `ctr run` live in the
// container's cgroup (ctr's default cgroupsPath /<namespace>/<id>, where runc would put the
// container), or, with `--cgroup ""`, in veil-<vm> below the shim's own cgroup; the cgroup
// goes with the container, also when the shim was killed (containerd's `shim delete`).
func TestShimCgroup(t *testing.T) {
	if cgroups.Mode() == cgroups.Unified {
		t.Fatal("TestShimCgroup reads cgroup v1 paths and this host is cgroup v2: it has not been ported to v2 yet")
	}
	for _, tc := range []struct {
		name string
		args []string
		kill bool // kill -9 the shim instead of a normal delete
	}{
		{name: "spec-path"},
		{name: "own", args: []string{"--cgroup", ""}},
		{name: "killed-shim", kill: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := uniqueID(t, "c")
			detached(t, id, "sleep 1000", tc.args...)
			vm := vmOf(id)
			shims, qemus := shimPIDs(id), qemuPIDs(vm)
			if len(shims) != 1 || len(qemus) != 1 {
				t.Fatalf("shims %v, QEMUs %v: want one of each", shims, qemus)
			}
			all := v1Cgroups(t, shims[0])
			cg := all["memory"]
			want := "/default/" + id
			if tc.args != nil {
				want = "/veil-" + vm
			}
			if !strings.HasSuffix(cg, want) {
				t.Errorf("shim in memory cgroup %q, want one ending in %q", cg, want)
			}
			if q := v1Cgroups(t, qemus[0])["memory"]; q != cg {
				t.Errorf("QEMU in memory cgroup %q, the shim in %q", q, cg)
			}
			dir := filepath.Join("/sys/fs/cgroup/memory", cg)
			usage, _ := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
			if n, _ := strconv.ParseUint(strings.TrimSpace(string(usage)), 10, 64); n < 64<<20 {
				t.Errorf("%s: memory usage %d, want the VM's (≥ 64 MiB)", dir, n)
			}
			if tc.kill {
				if err := syscall.Kill(shims[0], syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				if !waitFor(20*time.Second, func() bool { return taskStatus(t, id) != "RUNNING" }) {
					t.Errorf("task still RUNNING 20 s after its shim was killed")
				}
			}
			removeContainer(t, id)
			if !waitFor(10*time.Second, func() bool { _, err := os.Stat(dir); return os.IsNotExist(err) }) {
				procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
				t.Errorf("cgroup %s left after the container went (processes: %q)", dir, procs)
			}
			for c, p := range all {
				if !strings.HasSuffix(p, want) {
					t.Errorf("shim in %s cgroup %q, want one ending in %q", c, p, want)
				}
				// The shim removes the hierarchies one after another, retrying while dying
				// processes leave them: each gets the memory one's time.
				d := filepath.Join("/sys/fs/cgroup", c, p)
				if !waitFor(10*time.Second, func() bool { _, err := os.Stat(d); return os.IsNotExist(err) }) {
					t.Errorf("cgroup %s left", d)
				}
			}
		})
	}
}
