//go:build e2e

package shim

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veil-runtime/veil/shim/pod"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// checkPodGone fails unless nothing of the pod of VM vm is left: no QEMU, no virtiofsd, no
// pod directory, no mount naming the VM.
func checkPodGone(t *testing.T, vm string) {
	t.Helper()
	if !waitFor(10*time.Second, func() bool { return len(qemuPIDs(vm)) == 0 }) {
		t.Errorf("QEMU %v left behind", qemuPIDs(vm))
	}
	if left := procsMatching("virtiofsd", vm); len(left) > 0 {
		t.Errorf("virtiofsd %v left behind", left)
	}
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(pod.DirOf(vm)); return os.IsNotExist(err) }) {
		t.Errorf("%s left behind", pod.DirOf(vm))
	}
	if out, _ := exec.Command("grep", "-c", vm, "/proc/self/mountinfo").Output(); strings.TrimSpace(string(out)) != "0" {
		t.Errorf("mounts of %s left behind", vm)
	}
}

// TestKillVirtiofsd (issue 12): virtiofsd killed under a running pod takes the VM down (its
// containers' root file systems are on that share: every access would hang), the task exits,
// the shim's log says which virtiofsd ended and how, and the delete leaves nothing behind.
func TestKillVirtiofsd(t *testing.T) {
	id := uniqueID(t, "c")
	events := watchEvents(t)
	detached(t, id, "sleep 1000")
	vm := vmOf(id)
	fsds := procsMatching("virtiofsd", vm)
	if len(fsds) == 0 {
		t.Fatalf("no virtiofsd of VM %s", vm)
	}
	if err := syscall.Kill(fsds[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitFor(20*time.Second, func() bool { return events.has("/tasks/exit", id) }) {
		t.Fatalf("no /tasks/exit event for %s within 20 s of killing virtiofsd; events:\n%s", id, events.String())
	}
	if !waitFor(10*time.Second, func() bool { return len(qemuPIDs(vm)) == 0 }) {
		t.Errorf("QEMU %v still runs after its virtiofsd was killed", qemuPIDs(vm))
	}
	if !waitFor(5*time.Second, func() bool {
		b, _ := os.ReadFile(env.LogFile())
		return strings.Contains(string(b), "virtiofsd of shared dir")
	}) {
		t.Errorf("the containerd log does not say that virtiofsd ended; last lines:\n%s", containerdenv.Tail(env.LogFile(), 20))
	}
	removeContainer(t, id)
	checkPodGone(t, vm)
}

// TestHungGuest (issue 12): a VM that stops answering (QEMU SIGSTOPped: the agent, the guest
// and the VMM frozen) does not hang its pod's teardown: an exec gives up with its caller's
// deadline; SIGKILL, whose agent call is bounded, stops the VM when the agent does not answer,
// so the task stops; delete and container removal leave nothing behind.
func TestHungGuest(t *testing.T) {
	id := uniqueID(t, "c")
	detached(t, id, "sleep 1000")
	vm := vmOf(id)
	qemus := qemuPIDs(vm)
	if len(qemus) != 1 {
		t.Fatalf("QEMUs %v, want one", qemus)
	}
	if err := syscall.Kill(qemus[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(qemus[0], syscall.SIGKILL) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	out, err := env.ctrCmd(ctx, "task", "exec", "--exec-id", "hung", id, "true").CombinedOutput()
	if err == nil {
		t.Fatalf("exec in a frozen VM succeeded: %s", out)
	}
	t.Logf("exec in the frozen VM: %v after %s", err, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	r := ctr(t, time.Minute, "task", "kill", "-s", "SIGKILL", id)
	if r.code != 0 {
		t.Errorf("kill -s SIGKILL of the frozen pod's task: %s", r.stderr)
	}
	if !waitFor(20*time.Second, func() bool { return taskStatus(t, id) == "STOPPED" }) {
		t.Errorf("the task is %s 20 s after SIGKILL, want STOPPED", taskStatus(t, id))
	}
	removeContainer(t, id)
	t.Logf("kill, delete and container removal of the frozen pod: %s", time.Since(start).Round(time.Millisecond))
	checkPodGone(t, vm)
}
