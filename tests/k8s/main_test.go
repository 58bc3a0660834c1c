//go:build e2e

// Package k8s runs pods with the Veil runtime through a real Kubernetes: a single-node cluster
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, the kubelet) with a
// containerd 2.4 whose CRI plugin has the runc handler and the `veil` handler, started on this
// machine by tests/internal/k8scluster for the package's tests and removed afterwards
// (docs/kubernetes-cluster.md). The Kubernetes binaries come from `make kubernetes`
// (scripts/kubernetes.sh), containerd and crictl from `make containerd cri-tools`. Run with
//
//	VEIL_IMAGE=$PWD/build/image VEIL_BIN=$PWD/bin go test -tags e2e -count=1 -v ./tests/k8s/
package k8s

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/shim/pod"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
	"github.com/veil-runtime/veil/tests/internal/k8scluster"
)

// criNamespace is the containerd namespace of CRI's containers.
const criNamespace = "k8s.io"

var cluster *k8scluster.Cluster

func TestMain(m *testing.M) {
	k8scluster.Main(m, "tests/k8s", func(c *k8scluster.Cluster) { cluster = c })
}

// kubectl runs kubectl as the admin and returns its stdout; it fails the test unless kubectl
// exits 0.
func kubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := cluster.Kubectl(2*time.Minute, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// podStatus is the part of a pod's API object the tests read.
type podStatus struct {
	Metadata struct{ UID string }
	Status   struct {
		Phase             string
		PodIP             string
		ContainerStatuses []struct {
			Name  string
			State map[string]struct {
				Reason, Message string
			}
		}
	}
}

// getPod reads the pod name in the default namespace from the apiserver (found false when it
// does not exist).
func getPod(t testing.TB, name string) (p podStatus, found bool) {
	t.Helper()
	body, code, err := cluster.Get("/api/v1/namespaces/default/pods/" + name)
	switch {
	case err != nil:
		t.Fatalf("get pod %s: %v", name, err)
	case code == http.StatusNotFound:
		return p, false
	case code != http.StatusOK:
		t.Fatalf("get pod %s: HTTP %d: %s", name, code, body)
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	return p, true
}

// podYAML is a busybox pod running `sh -c script` (runtimeClass "" for the default, runc).
func podYAML(name, runtimeClass, script string) string {
	rc := ""
	if runtimeClass != "" {
		rc = "  runtimeClassName: " + runtimeClass + "\n"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
%s  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
`, name, rc, k8scluster.BusyboxImage, script)
}

// runPod applies the pod and waits until it is Running; it returns the pod and how long that
// took, and deletes the pod (if still there) when the test ends.
func runPod(t *testing.T, name, runtimeClass, script string, timeout time.Duration) (podStatus, time.Duration) {
	t.Helper()
	start := time.Now()
	kubectl(t, podYAML(name, runtimeClass, script), "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(2*time.Minute, "", "delete", "pod", name, "--ignore-not-found", "--wait", "--timeout=90s")
	})
	var p podStatus
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		p, _ = getPod(t, name)
		if p.Status.Phase == "Running" {
			break
		}
		failed := p.Status.Phase == "Failed" || p.Status.Phase == "Succeeded"
		for _, cs := range p.Status.ContainerStatuses {
			if w, ok := cs.State["waiting"]; ok && (strings.Contains(w.Reason, "Err") || strings.Contains(w.Reason, "BackOff")) {
				failed = true
			}
		}
		if failed || time.Now().After(deadline) {
			desc, _ := cluster.Kubectl(time.Minute, "", "describe", "pod", name)
			t.Fatalf("pod %s not Running after %s (phase %q):\n%s", name, time.Since(start).Round(time.Millisecond),
				p.Status.Phase, desc)
		}
	}
	took := time.Since(start)
	t.Logf("pod %s (runtimeClass %q): apply to Running in %s, IP %s", name, runtimeClass, took.Round(time.Millisecond), p.Status.PodIP)
	return p, took
}

// checkLogsAndExec checks `kubectl logs` (every line of wants in it: stdout and stderr) and
// `kubectl exec` (a command's output, exit code and stdin) for the pod, and returns the output
// of `uname -r` in it.
func checkLogsAndExec(t *testing.T, name string, wants ...string) string {
	t.Helper()
	var logs string
	if !containerdenv.WaitFor(30*time.Second, 200*time.Millisecond, func() bool {
		logs, _ = cluster.Kubectl(time.Minute, "", "logs", name)
		for _, want := range wants {
			if !strings.Contains(logs, want) {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("kubectl logs %s: want %q, got %q", name, wants, logs)
	}
	start := time.Now()
	if out := kubectl(t, "", "exec", name, "--", "sh", "-c", "echo exec-ok; id -u"); out != "exec-ok\n0" {
		t.Fatalf("kubectl exec %s: got %q", name, out)
	}
	t.Logf("kubectl exec in %s: %s", name, time.Since(start).Round(time.Millisecond))
	if _, err := cluster.Kubectl(time.Minute, "", "exec", name, "--", "sh", "-c", "exit 3"); err == nil ||
		!strings.Contains(err.Error(), "exit code 3") {
		t.Fatalf("kubectl exec %s -- exit 3: %v", name, err)
	}
	// stdin through the apiserver and the kubelet's stream.
	if out := kubectl(t, "piped through the pod", "exec", "-i", name, "--", "cat"); out != "piped through the pod" {
		t.Fatalf("kubectl exec -i %s -- cat: got %q", name, out)
	}
	return kubectl(t, "", "exec", name, "--", "uname", "-r")
}

// deletePod deletes the pod and waits until the API object is gone (the kubelet stopped its
// containers and released its volumes); it returns how long that took.
func deletePod(t *testing.T, name string) time.Duration {
	t.Helper()
	start := time.Now()
	kubectl(t, "", "delete", "pod", name, "--wait", "--timeout=2m")
	took := time.Since(start)
	t.Logf("pod %s: delete in %s", name, took.Round(time.Millisecond))
	return took
}

// sandboxOf is the CRI sandbox id of the pod with uid (through crictl).
func sandboxOf(t *testing.T, uid string) string {
	t.Helper()
	out, err := cluster.Crictl(time.Minute, "pods", "-q", "--label", "io.kubernetes.pod.uid="+uid)
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(out)
	if len(ids) != 1 {
		t.Fatalf("crictl pods for pod uid %s: %q, want one sandbox", uid, out)
	}
	return ids[0]
}

// qemuOf lists the pids of the QEMU processes of the VM of the sandbox id.
func qemuOf(sandbox string) []string {
	want := "veil-" + pod.VMID(criNamespace, sandbox)
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

// netnsList lists the network namespaces of the cluster's containerd (they live below its
// state directory: netns_mounts_under_state_dir).
func netnsList() []string {
	a, _ := filepath.Glob(filepath.Join(cluster.ContainerdDir(), "state", "*", "netns", "*"))
	b, _ := filepath.Glob(filepath.Join(cluster.ContainerdDir(), "state", "netns", "*"))
	return append(a, b...)
}

// waitGone waits up to 30 s until what lists nothing and returns what is left.
func waitGone(what func() []string) []string {
	var left []string
	containerdenv.WaitFor(30*time.Second, 200*time.Millisecond, func() bool {
		left = what()
		return len(left) == 0
	})
	return left
}

// newMounts lists the mounts below the cluster's directory that are not in before, and every
// mount anywhere whose path names one of ids (the pod's uid, sandbox, VM).
func newMounts(before []string, ids ...string) []string {
	old := map[string]bool{}
	for _, m := range before {
		old[m] = true
	}
	var left []string
	for _, m := range k8scluster.MountsUnder("/") {
		mine := strings.HasPrefix(m+"/", cluster.Dir+"/")
		for _, id := range ids {
			mine = mine || (id != "" && strings.Contains(m, id))
		}
		if mine && !old[m] {
			left = append(left, m)
		}
	}
	return left
}
