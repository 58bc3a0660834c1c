//go:build e2e

package cri

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPodOOM (issue 16): a pod with a 256 MiB memory limit gets a VM sized for it, and a
// container that allocates beyond its 256 MiB limit is OOM-killed in the guest (exit 137,
// reason OOMKilled through the shim's TaskOOM event), not the VM on the host: QEMU keeps
// running and the pod's other container still answers an exec.
func TestPodOOM(t *testing.T) {
	const limit = 256 << 20
	podID, cfgPath, qemu := runSizedPod(t, "oom", map[string]any{"memory_limit_in_bytes": limit})
	watcher := startContainer(t, podID, cfgPath, "watcher", "exec sleep 3600")

	// busybox dd reads 400 MiB from /dev/zero into one buffer: every page of it is touched.
	hog := crictl(t, "create", podID, writeJSON(t, "hog-ctr.json", map[string]any{
		"metadata": map[string]any{"name": "hog"},
		"image":    map[string]any{"image": env.busybox},
		"command":  []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=400M", "count=1"},
		"log_path": "hog.log",
		"linux":    map[string]any{"resources": map[string]any{"memory_limit_in_bytes": limit}},
	}), cfgPath)
	crictl(t, "start", hog)

	var st struct {
		Status struct {
			State    string `json:"state"`
			ExitCode int    `json:"exitCode"`
			Reason   string `json:"reason"`
		} `json:"status"`
	}
	if !waitFor(2*time.Minute, func() bool {
		out, _, err := env.crictl(time.Minute, "inspect", hog)
		return err == nil && json.Unmarshal([]byte(out), &st) == nil && st.Status.State == "CONTAINER_EXITED"
	}) {
		t.Fatalf("the hog container did not exit: %+v", st.Status)
	}
	t.Logf("hog: %+v", st.Status)
	if st.Status.ExitCode != 137 || st.Status.Reason != "OOMKilled" {
		t.Errorf("hog exited %d (%s); want 137 OOMKilled", st.Status.ExitCode, st.Status.Reason)
	}
	if now := qemuOf(podID); len(now) != 1 || now[0] != qemu {
		t.Fatalf("QEMU %v after the OOM, want the same process %s still running", now, qemu)
	}
	if out := crictl(t, "exec", "-s", watcher, "echo", "alive"); !strings.Contains(out, "alive") {
		t.Errorf("exec in the pod's other container after the OOM: %q", out)
	}
	// Under the kubelet the pod's cgroup, which holds QEMU, is limited to the containers'
	// limits plus the RuntimeClass overhead (deploy/runtimeclasses.yaml, 720Mi): QEMU, after
	// its guest filled a container to its limit, must stay within that or the host's OOM
	// killer would take the whole VM.
	rss := vmRSS(t, qemu)
	t.Logf("QEMU RSS after the OOM: %d MiB (bound: limit %d MiB + overhead 720 MiB)", rss>>20, limit>>20)
	if rss > limit+720<<20 {
		t.Errorf("QEMU RSS %d MiB exceeds the pod's limit plus the RuntimeClass overhead", rss>>20)
	}
}

// vmRSS is a process's resident set size in bytes.
func vmRSS(t *testing.T, pid string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%s/status", pid)
	}
	kb, _ := strconv.ParseUint(string(m[1]), 10, 64)
	return kb << 10
}
