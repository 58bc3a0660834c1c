//go:build e2e

package cri

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/veil-runtime/veil/shim/pod"
)

// podCgroupControllers are the v1 hierarchies the test makes the pod's cgroup in, as the
// kubelet's cgroupfs driver does (it makes it in every one; these are those the test reads).
var podCgroupControllers = []string{"memory", "cpu", "cpuacct", "pids"}

// TestPodCgroup (issue 16): a pod whose cgroup_parent is a pod cgroup made as the kubelet
// would, with the cgroupfs driver's path and with the systemd driver's slice. The shim, QEMU
// and virtiofsd run in the sandbox cgroup below it; the pod cgroup's memory usage covers
// QEMU's resident memory and crictl statsp (containerd reads the pod cgroup) reports it;
// after stopp/rmp the sandbox cgroup is gone, no process is left in the pod cgroup, and the
// pod cgroup itself (the kubelet's) is left for its owner.
func TestPodCgroup(t *testing.T) {
	if cgroups.Mode() == cgroups.Unified {
		t.Fatal("TestPodCgroup makes and reads cgroup v1 pod cgroups and this host is cgroup v2: it has not been ported to v2 yet (podcgroup's unit tests cover v2 paths)")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	r := hex.EncodeToString(b)
	t.Run("cgroupfs", func(t *testing.T) {
		parent := "/veil-test-kubepods/pod" + r
		podCgroupCase(t, "cgroup-fs", parent, parent, func(id string) string { return parent + "/" + id })
	})
	// The kubelet's systemd driver names the pod's slice; containerd's CRI passes
	// "<slice>:cri-containerd:<id>" and the shim makes the scope below the expanded slice.
	// containerd's own PodSandboxStats cannot read a slice name on cgroup v1 (it takes it
	// as a cgroupfs path), so crictl statsp is not checked there.
	t.Run("systemd", func(t *testing.T) {
		slice := "veiltestkubepods-pod" + r + ".slice"
		dir := "/veiltestkubepods.slice/" + slice
		podCgroupCase(t, "cgroup-sd", slice, dir, func(id string) string { return dir + "/cri-containerd-" + id + ".scope" })
	})
}

// podCgroupCase runs one pod with cgroup_parent cgroupParent, whose cgroup directory (below
// each hierarchy's root) is parent; sandboxCgOf gives the sandbox cgroup of a pod id.
func podCgroupCase(t *testing.T, name, cgroupParent, parent string, sandboxCgOf func(string) string) {
	makePodCgroup(t, parent)
	cfgPath := writeJSON(t, name+"-pod.json", map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "veil-test", "uid": name + "-uid", "attempt": 1},
		"log_directory": filepath.Join(env.Dir, "logs", name),
		"linux":         map[string]any{"cgroup_parent": cgroupParent},
	})
	podID := crictl(t, "runp", "--runtime", handler, cfgPath)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_, _, _ = env.crictl(time.Minute, "stopp", podID)
			_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
		}
	})
	vm := pod.VMID(criNamespace, podID)
	sandboxCg := sandboxCgOf(podID)

	qemu := qemuOf(podID)
	if len(qemu) != 1 {
		t.Fatalf("%d QEMU processes for the pod, want 1", len(qemu))
	}
	virtiofsd := pidsWith(func(args []string) bool {
		return strings.Contains(filepath.Base(args[0]), "virtiofsd") && strings.Contains(strings.Join(args, " "), vm)
	})
	shim := pidsWith(func(args []string) bool {
		return strings.HasSuffix(args[0], "containerd-shim-veil-v2") && hasArgs(args, "-id", podID)
	})
	if len(virtiofsd) == 0 || len(shim) != 1 {
		t.Fatalf("virtiofsd pids %v (want some), shim pids %v (want 1)", virtiofsd, shim)
	}
	procs := map[string][]string{"qemu": qemu, "virtiofsd": virtiofsd, "shim": shim}
	for what, pids := range procs {
		for _, pid := range pids {
			for _, c := range []string{"memory", "cpu", "pids"} {
				if got := cgroupOfPid(t, pid, c); got != sandboxCg {
					t.Errorf("%s (pid %s) is in %s cgroup %q, want the pod's sandbox cgroup %q", what, pid, c, got, sandboxCg)
				}
			}
		}
	}

	// Memory: every page QEMU touched was charged to the pod (the shim joined the cgroup
	// before QEMU started). VmRSS also counts file pages of QEMU's binary and libraries that
	// other processes brought into the page cache first (charged to them), so the strict
	// comparison is made with RSS less the shared-file part, and the full RSS is logged.
	usage := readUint(t, filepath.Join("/sys/fs/cgroup/memory", parent, "memory.usage_in_bytes"))
	rss, rssFile := procStatus(t, qemu[0], "VmRSS"), procStatus(t, qemu[0], "RssFile")
	t.Logf("pod cgroup memory.usage_in_bytes %d MiB; QEMU VmRSS %d MiB (RssFile %d MiB)", usage>>20, rss>>20, rssFile>>20)
	if usage < rss-rssFile {
		t.Errorf("pod cgroup memory usage %d < QEMU's anonymous and shared-memory RSS %d", usage, rss-rssFile)
	}
	if usage < rss {
		t.Logf("note: usage below QEMU's full VmRSS by %d KiB (file pages charged elsewhere)", (rss-usage)>>10)
	}
	cpu := readUint(t, filepath.Join("/sys/fs/cgroup/cpuacct", parent, "cpuacct.usage"))
	if cpu == 0 {
		t.Errorf("pod cgroup cpuacct.usage is 0: the VM's CPU time is not accounted to the pod")
	}

	if cgroupParent == parent {
		checkStatsp(t, podID, rss-rssFile)
	}

	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	stopped = true
	checkGone(t, podID, vm)
	if !waitFor(15*time.Second, func() bool { return len(pidsWith(func(a []string) bool { return hasArgs(a, "-id", podID) })) == 0 }) {
		t.Errorf("the pod's shim still runs after rmp")
	}
	for _, c := range podCgroupControllers {
		d := filepath.Join("/sys/fs/cgroup", c, sandboxCg)
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("sandbox cgroup %s left after rmp (%v)", d, err)
		}
		procs, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", c, parent, "cgroup.procs"))
		if err != nil {
			t.Errorf("the pod cgroup (the kubelet's, not the shim's to remove) is gone in %s: %v", c, err)
		} else if len(strings.TrimSpace(string(procs))) > 0 {
			t.Errorf("processes left in pod cgroup %s (%s): %s", parent, c, procs)
		}
	}
}

// checkStatsp checks containerd's PodSandboxStats, which reads the pod cgroup
// (cgroup_parent): a working set of at least minWS bytes and some CPU time.
func checkStatsp(t *testing.T, podID string, minWS uint64) {
	t.Helper()
	out := crictl(t, "statsp", "-o", "json", "--id", podID)
	var st struct {
		Stats []struct {
			Linux struct {
				CPU    struct{ UsageCoreNanoSeconds struct{ Value json.Number } }
				Memory struct{ WorkingSetBytes, UsageBytes struct{ Value json.Number } }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Stats) != 1 {
		t.Fatalf("crictl statsp: %v\n%s", err, out)
	}
	ws, _ := strconv.ParseUint(st.Stats[0].Linux.Memory.WorkingSetBytes.Value.String(), 10, 64)
	cpuNs, _ := strconv.ParseUint(st.Stats[0].Linux.CPU.UsageCoreNanoSeconds.Value.String(), 10, 64)
	t.Logf("crictl statsp: working set %d MiB, CPU %.2f s", ws>>20, float64(cpuNs)/1e9)
	if ws < minWS || cpuNs == 0 {
		t.Errorf("crictl statsp: working set %d (want ≥ %d), CPU %d ns (want > 0)", ws, minWS, cpuNs)
	}
}

// makePodCgroup makes the pod's cgroup in every v1 hierarchy, as the kubelet would, and
// removes it (and whatever is left below it) when the test ends.
func makePodCgroup(t *testing.T, parent string) {
	t.Helper()
	for _, c := range podCgroupControllers {
		if err := os.MkdirAll(filepath.Join("/sys/fs/cgroup", c, parent), 0o755); err != nil {
			t.Fatalf("make pod cgroup: %v", err)
		}
	}
	t.Cleanup(func() {
		// The shim's cgroup1.New made the path in the other hierarchies too.
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", filepath.Dir(parent)))
		for _, top := range dirs {
			var all []string
			_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					all = append(all, p)
				}
				return nil
			})
			for i := len(all) - 1; i >= 0; i-- { // children first
				if err := os.Remove(all[i]); err != nil && !os.IsNotExist(err) {
					t.Errorf("remove test cgroup: %v", err)
				}
			}
		}
	})
}

// pidsWith lists the processes whose command line matches.
func pidsWith(match func(args []string) bool) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// hasArgs reports whether args holds flag followed by value.
func hasArgs(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

// cgroupOfPid reads a process's cgroup in a v1 controller.
func cgroupOfPid(t *testing.T, pid, controller string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		t.Fatalf("cgroup of pid %s: %v", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			for _, c := range strings.Split(parts[1], ",") {
				if c == controller {
					return parts[2]
				}
			}
		}
	}
	t.Fatalf("pid %s has no %s cgroup:\n%s", pid, controller, data)
	return ""
}

func readUint(t *testing.T, path string) uint64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// procStatus reads a "kB" field of /proc/<pid>/status, in bytes.
func procStatus(t *testing.T, pid, field string) uint64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				t.Fatalf("pid %s %s: %q", pid, field, line)
			}
			return kb << 10
		}
	}
	t.Fatalf("pid %s: no %s in status", pid, field)
	return 0
}
