//go:build e2e

package cri

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPodSize (issue 16): a pod whose containers' limits sum to 1 CPU and 256 MiB (the
// kubelet passes the sum as the sandbox's resources; containerd's CRI as annotations) gets a
// VM of the configured base (1 vCPU, 512 MiB) plus that: QEMU runs with -smp 2 -m 768M and
// the guest sees 2 CPUs and more than 512 MiB.
func TestPodSize(t *testing.T) {
	podID, cfgPath, qemu := runSizedPod(t, "size", map[string]any{
		"cpu_period": 100000, "cpu_quota": 100000, "memory_limit_in_bytes": 256 << 20})
	data, err := os.ReadFile(filepath.Join("/proc", qemu, "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
	if !hasArgs(args, "-m", "768M") || !hasArgs(args, "-smp", "2") {
		t.Errorf("QEMU command line %q: want -m 768M -smp 2", args)
	}
	cid := startContainer(t, podID, cfgPath, "sizer", "echo cpus=$(nproc); grep MemTotal /proc/meminfo; exec sleep 3600")
	out := waitLog(t, cid, "MemTotal")
	if !strings.Contains(out, "cpus=2") {
		t.Errorf("guest: %q, want cpus=2", out)
	}
	m := regexp.MustCompile(`MemTotal:\s+(\d+) kB`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no MemTotal in %q", out)
	}
	kb, _ := strconv.ParseUint(m[1], 10, 64)
	t.Logf("guest: %s, MemTotal %d MiB", strings.Fields(out)[0], kb>>10)
	if kb>>10 <= 512 {
		t.Errorf("guest MemTotal %d MiB: not more than the 512 MiB base", kb>>10)
	}
}

// runSizedPod starts a pod whose sandbox carries resources (the sum of its containers'
// limits, as the kubelet passes it), removes it when the test ends, and returns its id, its
// config file and the pid of its one QEMU.
func runSizedPod(t *testing.T, name string, resources map[string]any) (podID, cfgPath, qemu string) {
	t.Helper()
	cfgPath = writeJSON(t, name+"-pod.json", map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "veil-test", "uid": name + "-uid", "attempt": 1},
		"log_directory": filepath.Join(env.Dir, "logs", name),
		"linux":         map[string]any{"resources": resources},
	})
	podID = crictl(t, "runp", "--runtime", handler, cfgPath)
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})
	pids := qemuOf(podID)
	if len(pids) != 1 {
		t.Fatalf("%d QEMU processes for the pod, want 1", len(pids))
	}
	return podID, cfgPath, pids[0]
}
