package podcgroup

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// needCgroups fails unless the test can create cgroups (root, a mounted cgroup fs), and, in
// TestCgroupV2's child, unless the cgroup2 mount it made is what the package sees.
func needCgroups(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the cgroup tests create real cgroups: run them as root (make unit does)")
	}
	if cgroups.Mode() == cgroups.Unavailable {
		t.Fatal("no cgroup file system is mounted at /sys/fs/cgroup: mount cgroup v1 controllers or cgroup2 there")
	}
	if os.Getenv(v2ChildEnv) != "" && cgroups.Mode() != cgroups.Unified {
		t.Fatalf("TestCgroupV2's child sees cgroup mode %v, not unified", cgroups.Mode())
	}
}

// sleeper starts a process that stands in for the shim: it forks a child now and then, whose
// pages are charged to whichever memory cgroup it was born in.
func sleeper(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do sleep 0.05; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

func randomName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// cgroupOf reads pid's cgroup path in controller ("" is v2's unified hierarchy).
func cgroupOf(t *testing.T, pid int, controller string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return parts[2]
			}
		}
	}
	t.Fatalf("pid %d: no %q line in /proc/%d/cgroup:\n%s", pid, controller, pid, data)
	return ""
}

// dirs lists the directories of cgroup path p in every hierarchy the host has.
func dirs(p string) []string {
	if cgroups.Mode() == cgroups.Unified {
		return []string{filepath.Join(unifiedMount, p)}
	}
	var out []string
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "cpuset", "devices", "freezer", "blkio", "systemd"} {
		if _, err := os.Stat(filepath.Join(unifiedMount, c)); err == nil {
			out = append(out, filepath.Join(unifiedMount, c, p))
		}
	}
	return out
}

// checkIn fails unless pid is in cgroup want (memory and cpu on v1, the unified one on v2).
func checkIn(t *testing.T, pid int, want string) {
	t.Helper()
	controllers := []string{"memory", "cpu", "pids"}
	if cgroups.Mode() == cgroups.Unified {
		controllers = []string{""}
	}
	for _, c := range controllers {
		if got := cgroupOf(t, pid, c); got != want {
			t.Errorf("pid %d in %q cgroup %q, want %q", pid, c, got, want)
		}
	}
}

// TestJoinExplicitPath: the CRI case. The pod's cgroup (the kubelet's) exists; Join creates
// the sandbox cgroup below it in every hierarchy, moves the process in, reports its usage,
// and after Leave and Remove the sandbox cgroup is gone and the pod's cgroup stays.
func TestJoinExplicitPath(t *testing.T) {
	needCgroups(t)
	parent := "/" + randomName("veil-unit-")
	podCg := parent + "/pod" + randomName("")
	for _, d := range dirs(podCg) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, p := range []string{podCg + "/sandbox1", podCg, parent} {
			for _, d := range dirs(p) {
				if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
					t.Errorf("remove test cgroup: %v", err)
				}
			}
		}
	})
	pid := sleeper(t)
	before := cgroupOf(t, pid, "memory")
	if cgroups.Mode() == cgroups.Unified {
		before = cgroupOf(t, pid, "")
	}
	podDir := t.TempDir()
	g, err := Join(podDir, podCg+"/sandbox1", "vm1", pid)
	if err != nil {
		t.Fatal(err)
	}
	if g.Path() != podCg+"/sandbox1" {
		t.Errorf("Path() = %q", g.Path())
	}
	checkIn(t, pid, podCg+"/sandbox1")
	time.Sleep(300 * time.Millisecond) // a few children born in the cgroup
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	switch m := st.(type) {
	case *v1stats.Metrics:
		if m.GetMemory().GetUsage().GetUsage() == 0 || m.GetPids().GetCurrent() == 0 || m.GetCPU().GetUsage().GetTotal() == 0 {
			t.Errorf("v1 stats: memory usage %d, pids %d, cpu %d ns; want all > 0", m.GetMemory().GetUsage().GetUsage(), m.GetPids().GetCurrent(), m.GetCPU().GetUsage().GetTotal())
		}
	case *v2stats.Metrics:
		// cpu.stat is in every v2 cgroup; pids and memory only where those controllers are
		// enabled (a v2 hierarchy mounted beside v1 controllers has none: TestCgroupV2).
		if m.GetCPU().GetUsageUsec() == 0 {
			t.Errorf("v2 stats: cpu %d µs, want > 0", m.GetCPU().GetUsageUsec())
		}
		enabled := v2Controllers(t, podCg+"/sandbox1")
		if enabled["pids"] && m.GetPids().GetCurrent() == 0 {
			t.Errorf("v2 stats: pids %d, want > 0", m.GetPids().GetCurrent())
		}
		if enabled["memory"] && m.GetMemory().GetUsage() == 0 {
			t.Errorf("v2 stats: memory usage %d, want > 0", m.GetMemory().GetUsage())
		}
	default:
		t.Fatalf("Stats() = %T", st)
	}
	// With the process inside, the cgroup cannot go.
	removeWait = 0
	err = Remove(podDir)
	removeWait = defaultRemoveWait
	if err == nil || !strings.Contains(err.Error(), "sandbox1") {
		t.Errorf("Remove with a process inside: %v, want an error naming the cgroup", err)
	}
	if err := g.Leave(); err != nil {
		t.Fatal(err)
	}
	if cgroups.Mode() == cgroups.Unified {
		if got := cgroupOf(t, pid, ""); got != before {
			t.Errorf("after Leave: cgroup %q, want %q", got, before)
		}
	} else if got := cgroupOf(t, pid, "memory"); got != before {
		t.Errorf("after Leave: memory cgroup %q, want %q", got, before)
	}
	if err := Remove(podDir); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs(podCg + "/sandbox1") {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left after Remove (%v)", d, err)
		}
	}
	for _, d := range dirs(podCg) {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("the pod's cgroup %s went too: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(podDir, RecordFile)); !os.IsNotExist(err) {
		t.Errorf("record left: %v", err)
	}
	if err := Remove(podDir); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// TestJoinOwnCgroup: without a cgroupsPath (ctr run) the cgroup is veil-<vm> below the
// process's own in each hierarchy.
func TestJoinOwnCgroup(t *testing.T) {
	needCgroups(t)
	pid := sleeper(t)
	vm := randomName("vm")
	own := map[string]string{}
	for _, c := range []string{"memory", "cpu"} {
		if cgroups.Mode() != cgroups.Unified {
			own[c] = cgroupOf(t, pid, c)
		}
	}
	podDir := t.TempDir()
	g, err := Join(podDir, "", vm, pid)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = g.Leave(); _ = Remove(podDir) }()
	if cgroups.Mode() == cgroups.Unified {
		if got := cgroupOf(t, pid, ""); filepath.Base(got) != "veil-"+vm {
			t.Errorf("v2 cgroup %q, want .../veil-%s", got, vm)
		}
	}
	for c, base := range own {
		if got, want := cgroupOf(t, pid, c), filepath.Join(base, "veil-"+vm); got != want {
			t.Errorf("%s cgroup %q, want %q", c, got, want)
		}
	}
	if err := g.Leave(); err != nil {
		t.Fatal(err)
	}
	if err := Remove(podDir); err != nil {
		t.Fatal(err)
	}
	for c, base := range own {
		d := filepath.Join(unifiedMount, c, base, "veil-"+vm)
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s left (%v)", d, err)
		}
	}
}

// TestJoinRefusesBadPath: nothing is created or recorded for a path outside the rules.
func TestJoinRefusesBadPath(t *testing.T) {
	needCgroups(t)
	podDir := t.TempDir()
	if _, err := Join(podDir, "/kubepods/../../x", "vm", os.Getpid()); err == nil || !strings.Contains(err.Error(), `".."`) {
		t.Fatalf("Join with ..: %v", err)
	}
	if _, err := os.Stat(filepath.Join(podDir, RecordFile)); !os.IsNotExist(err) {
		t.Errorf("record written for a refused path (%v)", err)
	}
}

// TestRemoveRefusesBadRecord: a record naming a path outside the rules is not acted on.
func TestRemoveRefusesBadRecord(t *testing.T) {
	podDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(podDir, RecordFile), []byte(`{"mode":"v1","v1":{"memory":"/../../etc"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Remove(podDir); err == nil || !strings.Contains(err.Error(), `".."`) {
		t.Fatalf("Remove of a bad record: %v", err)
	}
}
