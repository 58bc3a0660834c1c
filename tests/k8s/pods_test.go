//go:build e2e

package k8s

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/shim/pod"
	"github.com/veil-runtime/veil/tests/internal/k8scluster"
)

// runtimeClass is the RuntimeClass that selects containerd's veil handler, as docs/shim.md
// shows it (the overhead is the VM's).
const runtimeClass = `apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: veil
handler: ` + k8scluster.VeilHandler + `
overhead:
  podFixed:
    memory: "600Mi"
    cpu: "250m"
`

// TestClusterUp: the node is registered and Ready, and reports the kubelet's and containerd's
// versions.
func TestClusterUp(t *testing.T) {
	t.Logf("cluster start: %.1f s (%s)", cluster.StartTime.Seconds(), strings.Join(cluster.Timings, ", "))
	ready := kubectl(t, "", "get", "node", k8scluster.NodeName, "-o",
		`jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion} {.status.addresses[?(@.type=="InternalIP")].address}`)
	want := "True " + k8scluster.KubernetesVersion + " containerd://"
	if !strings.HasPrefix(ready, want) || !strings.HasSuffix(ready, " "+k8scluster.NodeIP) {
		t.Fatalf("node %s: %q, want %q...%s", k8scluster.NodeName, ready, want, k8scluster.NodeIP)
	}
	t.Logf("node: %s", ready)
}

// TestRuncPod: a pod with the default handler (runc) runs; logs and exec work through the
// apiserver and the kubelet; delete removes it.
func TestRuncPod(t *testing.T) {
	before := k8scluster.MountsUnder("/")
	p, _ := runPod(t, "runc-pod", "", "echo hello from runc-pod; exec sleep 3600", 2*time.Minute)
	sandbox := sandboxOf(t, p.Metadata.UID)
	checkLogsAndExec(t, "runc-pod", "hello from runc-pod")
	if n := len(qemuOf(sandbox)); n != 0 {
		t.Fatalf("runc pod has %d QEMU processes", n)
	}
	deletePod(t, "runc-pod")
	if left := waitGone(func() []string { return newMounts(before, p.Metadata.UID) }); len(left) > 0 {
		t.Errorf("mounts left after delete: %v", left)
	}
}

// TestVeilPod: a pod with runtimeClassName veil runs in one QEMU VM (its kernel is the guest
// image's, not the host's); logs and exec work; after kubectl delete no QEMU, mount or network
// namespace of it is left.
func TestVeilPod(t *testing.T) {
	kubectl(t, runtimeClass, "apply", "-f", "-")
	beforeMounts, beforeNetns := k8scluster.MountsUnder("/"), netnsList()
	p, _ := runPod(t, "veil-pod", "veil", "echo hello from veil-pod; echo to stderr >&2; exec sleep 3600", 4*time.Minute)
	sandbox := sandboxOf(t, p.Metadata.UID)
	vm := pod.VMID(criNamespace, sandbox)
	if pids := qemuOf(sandbox); len(pids) != 1 {
		t.Fatalf("veil pod (sandbox %s): QEMU processes %v, want exactly one", sandbox[:12], pids)
	}
	kernel := checkLogsAndExec(t, "veil-pod", "hello from veil-pod", "to stderr")
	var host unix.Utsname
	if err := unix.Uname(&host); err != nil {
		t.Fatal(err)
	}
	if hostKernel := unix.ByteSliceToString(host.Release[:]); kernel == hostKernel {
		t.Fatalf("the veil pod runs on the host's kernel %s, not in a VM", kernel)
	}
	t.Logf("veil pod's kernel: %s (sandbox %s, VM %s)", kernel, sandbox[:12], vm)

	deletePod(t, "veil-pod")
	start := time.Now()
	var pids []string
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if pids = qemuOf(sandbox); len(pids) == 0 {
			break
		}
	}
	if len(pids) != 0 {
		t.Fatalf("QEMU %v of the deleted pod still runs", pids)
	}
	t.Logf("QEMU gone %s after the pod object", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(pod.DirOf(vm)); !os.IsNotExist(err) {
		t.Errorf("the shim's pod directory %s is left (err %v)", pod.DirOf(vm), err)
	}
	if left := waitGone(func() []string { return newMounts(beforeMounts, p.Metadata.UID, sandbox, vm) }); len(left) > 0 {
		t.Errorf("mounts left after delete: %v", left)
	}
	old := map[string]bool{}
	for _, n := range beforeNetns {
		old[n] = true
	}
	left := waitGone(func() (left []string) {
		for _, n := range netnsList() {
			if !old[n] {
				left = append(left, n)
			}
		}
		return left
	})
	if len(left) > 0 {
		t.Errorf("network namespaces left after delete: %v", left)
	}
}
