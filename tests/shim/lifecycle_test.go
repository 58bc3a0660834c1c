//go:build e2e

package shim

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

func TestRunTerminal(t *testing.T) {
	id := uniqueID(t, "c")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := env.ctrCmd(ctx, append(runArgs("--rm", "-t"), env.image, id, "sh", "-c", "tty; [ -t 0 ] && echo stdin-is-tty; exit 3")...)
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, ptmx); close(copied) }()
	err = cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 3 {
		t.Fatalf("ctr run -t: %v, want exit 3; output %q", err, out.String())
	}
	ptmx.Close()
	<-copied
	if !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "stdin-is-tty") {
		t.Errorf("output %q: want a /dev/pts terminal on stdin", out.String())
	}
}

func TestExecPsPauseKill(t *testing.T) {
	id := uniqueID(t, "c")
	detached(t, id, `trap "exit 3" TERM; while true; do sleep 0.2; done`)
	if st := taskStatus(t, id); st != "RUNNING" {
		t.Fatalf("status %q, want RUNNING", st)
	}

	r := ctr(t, time.Minute, "task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo from-exec; exit 5")
	if r.code != 5 || r.stdout != "from-exec\n" {
		t.Errorf("task exec: exit %d stdout %q stderr %q; want 5 and from-exec", r.code, r.stdout, r.stderr)
	}

	ps := mustCtr(t, time.Minute, "task", "ps", id)
	if lines := strings.Split(strings.TrimSpace(ps), "\n"); len(lines) < 2 {
		t.Errorf("task ps listed no process:\n%s", ps)
	}

	mustCtr(t, time.Minute, "task", "pause", id)
	if st := taskStatus(t, id); st != "PAUSED" {
		t.Errorf("after pause: status %q, want PAUSED", st)
	}
	mustCtr(t, time.Minute, "task", "resume", id)
	if st := taskStatus(t, id); st != "RUNNING" {
		t.Errorf("after resume: status %q, want RUNNING", st)
	}

	mustCtr(t, time.Minute, "task", "kill", "-s", "SIGTERM", id)
	if !waitFor(20*time.Second, func() bool { return taskStatus(t, id) == "STOPPED" }) {
		t.Fatalf("task still %s 20 s after SIGTERM", taskStatus(t, id))
	}
	out := mustCtr(t, time.Minute, "task", "delete", id)
	t.Logf("task delete: %q", out)
}

func TestMetrics(t *testing.T) {
	id := uniqueID(t, "c")
	detached(t, id, "sleep 1000", "--memory-limit", "67108864")
	out := mustCtr(t, time.Minute, "task", "metrics", id)
	if !strings.Contains(out, "memory") {
		t.Errorf("task metrics:\n%s", out)
	}
	t.Logf("task metrics:\n%s", out)
}

func TestOOMEvent(t *testing.T) {
	id := uniqueID(t, "c")
	events := watchEvents(t)
	// tail keeps every byte of a file without newlines: it outgrows the 32 MiB limit.
	r := ctr(t, 2*time.Minute, append(runArgs("--rm", "--memory-limit", "33554432"), env.image, id,
		"sh", "-c", "tail /dev/zero")...)
	if r.code != 137 {
		t.Errorf("exit %d, want 137 (killed); stderr %q", r.code, r.stderr)
	}
	if !waitFor(10*time.Second, func() bool { return events.has("/tasks/oom", id) }) {
		t.Errorf("no /tasks/oom event for %s in ctr events:\n%s", id, events.String())
	}
}

func TestPodGrouping(t *testing.T) {
	group := uniqueID(t, "pod")
	a, b := group+"-a", group+"-b"
	ann := "--annotation=io.containerd.veil.v2.group=" + group
	detached(t, a, "sleep 1000", ann)
	detached(t, b, "sleep 1000", ann)
	if n := len(qemuPIDs(vmOf(group))); n != 1 {
		t.Fatalf("%d QEMU processes for pod %s, want 1", n, group)
	}
	out := mustCtr(t, time.Minute, "task", "exec", "--exec-id", "x", b, "hostname")
	t.Logf("b's hostname: %s", out)
}
