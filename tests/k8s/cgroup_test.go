//go:build e2e

package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/tests/internal/k8scluster"
)

// checkPodCgroup (issue 16): the pod's QEMU, virtiofsd and shim run in the sandbox cgroup
// below the kubelet's pod cgroup (…/pod<uid>/<sandbox id>) in the memory and cpu
// hierarchies, and the kubelet's summary API reports for the pod at least QEMU's anonymous
// and shared memory. It returns the sandbox cgroup (memory hierarchy path).
func checkPodCgroup(t *testing.T, name, uid, sandbox, vm string) string {
	t.Helper()
	want := "/pod" + uid + "/" + sandbox
	qemu := qemuOf(sandbox)
	procs := map[string][]int{"shim": shimsOf(sandbox), "virtiofsd": virtiofsdOf(vm)}
	for _, p := range qemu {
		var n int
		_, _ = fmt.Sscan(p, &n)
		procs["qemu"] = append(procs["qemu"], n)
	}
	var sandboxCg string
	for what, pids := range procs {
		for _, pid := range pids {
			for _, c := range []string{"memory", "cpu"} {
				got := cgroupLine(pid, c)
				if !strings.HasSuffix(got, want) {
					t.Errorf("%s (pid %d) in %s cgroup %q, want the pod's sandbox cgroup …%s", what, pid, c, got, want)
				}
				if c == "memory" {
					sandboxCg = got
				}
			}
		}
	}
	if len(qemu) != 1 {
		return sandboxCg
	}
	anon := statusKiB(qemu[0], "RssAnon") + statusKiB(qemu[0], "RssShmem")
	var ws, usage uint64
	ok := waitFor(90*time.Second, func() bool {
		ws, usage = summaryMemory(t, name)
		return ws >= anon<<10
	})
	t.Logf("kubelet summary for pod %s: working set %d MiB, usage %d MiB; QEMU RssAnon+RssShmem %d MiB", name, ws>>20, usage>>20, anon>>10)
	if !ok {
		t.Errorf("kubelet summary: pod %s working set %d bytes < QEMU's anonymous and shared memory %d KiB", name, ws, anon)
	}
	return sandboxCg
}

// cgroupLine is a process's cgroup in a v1 controller ("" when unknown).
func cgroupLine(pid int, controller string) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, line := range strings.Split(string(data), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 {
			for _, c := range strings.Split(parts[1], ",") {
				if c == controller {
					return parts[2]
				}
			}
		}
	}
	return ""
}

// statusKiB reads a kB field of /proc/<pid>/status (0 when absent).
func statusKiB(pid, field string) uint64 {
	data, _ := os.ReadFile("/proc/" + pid + "/status")
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kb uint64
			_, _ = fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			return kb
		}
	}
	return 0
}

// summaryMemory reads the pod's memory from the kubelet's summary API (through the
// apiserver's node proxy): working set and usage in bytes, zeros while it has none.
func summaryMemory(t *testing.T, name string) (ws, usage uint64) {
	t.Helper()
	body, code, err := cluster.Get("/api/v1/nodes/" + k8scluster.NodeName + "/proxy/stats/summary")
	if err != nil || code != 200 {
		t.Logf("stats/summary: HTTP %d, %v: %.200s", code, err, body)
		return 0, 0
	}
	var s struct {
		Pods []struct {
			PodRef struct{ Name, Namespace string }
			Memory *struct{ WorkingSetBytes, UsageBytes uint64 }
		}
	}
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("stats/summary: %v", err)
	}
	for _, p := range s.Pods {
		if p.PodRef.Name == name && p.PodRef.Namespace == "default" && p.Memory != nil {
			return p.Memory.WorkingSetBytes, p.Memory.UsageBytes
		}
	}
	return 0, 0
}
