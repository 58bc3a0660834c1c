//go:build e2e

package cri

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/shim/pod"
)

// criNamespace is the containerd namespace of CRI's containers.
const criNamespace = "k8s.io"

// podConfig writes a pod sandbox config for crictl, with the pod's annotations (nil for
// none), and returns its path.
func podConfig(t testing.TB, name string, annotations map[string]string) string {
	t.Helper()
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "veil-test", "uid": name + "-uid", "attempt": 1},
		"log_directory": filepath.Join(env.Dir, "logs", name),
		"linux":         map[string]any{},
		"annotations":   annotations,
	}
	return writeJSON(t, name+"-pod.json", cfg)
}

// containerConfig writes a container config running `sh -c script` in busybox.
func containerConfig(t testing.TB, name, script string) string {
	t.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": env.busybox},
		"command":  []string{"sh", "-c", script},
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	return writeJSON(t, name+"-ctr.json", cfg)
}

func writeJSON(t testing.TB, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runPod starts a pod with the veil handler and removes it when the test ends.
func runPod(t *testing.T, name string) (id, cfgPath string) {
	t.Helper()
	cfgPath = podConfig(t, name, nil)
	start := time.Now()
	id = crictl(t, "runp", "--runtime", handler, cfgPath)
	t.Logf("runp %s: %s in %s", name, id, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", id)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", id)
	})
	return id, cfgPath
}

// startContainer creates and starts a container in a pod.
func startContainer(t *testing.T, podID, podCfg, name, script string) string {
	t.Helper()
	id := crictl(t, "create", podID, containerConfig(t, name, script), podCfg)
	crictl(t, "start", id)
	return id
}

// qemuOf lists the pids of the QEMU processes of a pod's VM.
func qemuOf(podID string) []string {
	want := "veil-" + pod.VMID(criNamespace, podID)
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if len(args) > 2 && strings.Contains(args[0], "qemu-system") && args[1] == "-name" && args[2] == want {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// waitLog waits until the container's CRI log holds want (crictl logs prints the stderr
// stream on its own stderr).
func waitLog(t testing.TB, cid, want string) string {
	t.Helper()
	var out string
	if !waitFor(30*time.Second, func() bool {
		stdout, stderr, _ := env.crictl(time.Minute, "logs", cid)
		out = stdout + stderr
		return strings.Contains(out, want)
	}) {
		t.Fatalf("crictl logs %s: want %q, got %q", cid, want, out)
	}
	return out
}

// TestCrictlFlow: runp, create, start, exec, logs, stop, rm, rmp; two containers of one pod
// share one VM; nothing of the pod is left afterwards.
func TestCrictlFlow(t *testing.T) {
	podID, podCfg := runPod(t, "flow")
	vm := pod.VMID(criNamespace, podID)
	if n := len(qemuOf(podID)); n != 1 {
		t.Fatalf("after runp: %d QEMU processes for the pod, want 1", n)
	}
	c1 := startContainer(t, podID, podCfg, "one", "echo hello from one; echo to stderr >&2; exec sleep 3600")
	c2 := startContainer(t, podID, podCfg, "two", "echo hello from two; exec sleep 3600")
	if n := len(qemuOf(podID)); n != 1 {
		t.Fatalf("two containers: %d QEMU processes for the pod, want 1 (one VM per pod)", n)
	}
	waitLog(t, c1, "hello from one")
	waitLog(t, c1, "to stderr")
	waitLog(t, c2, "hello from two")

	if out := crictl(t, "exec", "--sync", c1, "sh", "-c", "echo exec-ok; cat /proc/1/cmdline | tr '\\0' ' '"); !strings.Contains(out, "exec-ok") {
		t.Fatalf("exec --sync: got %q", out)
	}
	// Both containers run in the same guest: the second sees the first's sleep.
	if out := crictl(t, "exec", "--sync", c2, "hostname"); out == "" {
		t.Fatalf("exec hostname: empty")
	}
	_, errOut, err := env.crictl(time.Minute, "exec", "--sync", c1, "sh", "-c", "exit 3")
	if err == nil || !strings.Contains(err.Error()+errOut, "3") {
		t.Fatalf("exec exit 3: err %v, stderr %q", err, errOut)
	}

	crictl(t, "stop", "--timeout", "5", c1)
	if st := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", c1); st != "CONTAINER_EXITED" {
		t.Fatalf("after stop: state %q", st)
	}
	crictl(t, "rm", c1)
	crictl(t, "stop", "--timeout", "5", c2)
	crictl(t, "rm", c2)
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	checkGone(t, podID, vm)
}

// checkGone fails unless the pod's QEMU, pod directory, mounts and network namespace are gone.
func checkGone(t *testing.T, podID, vm string) {
	t.Helper()
	if !waitFor(15*time.Second, func() bool { return len(qemuOf(podID)) == 0 }) {
		t.Errorf("QEMU of pod %s still runs after rmp: %v", podID, qemuOf(podID))
	}
	if _, err := os.Stat(pod.DirOf(vm)); !os.IsNotExist(err) {
		t.Errorf("pod directory %s still exists (err %v)", pod.DirOf(vm), err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, vm) || strings.Contains(line, podID) {
			t.Errorf("mount left after rmp: %s", line)
		}
	}
	netns, _ := filepath.Glob(filepath.Join(env.Dir, "state", "*", "netns", "*"))
	netns2, _ := filepath.Glob(filepath.Join(env.Dir, "state", "netns", "*"))
	if left := append(netns, netns2...); len(left) > 0 {
		t.Errorf("network namespaces left after rmp: %v", left)
	}
}
