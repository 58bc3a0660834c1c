//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
)

// TestOOM: a container over its memory limit is killed, and the agent reports it as an OOM
// both as an event and in the process's wait status.
func TestOOM(t *testing.T) {
	sb := boot(t)
	c := ctx(t, 2*time.Minute)
	newContainer(t, sb, "hog", []string{"tail", "/dev/zero"}, containerOpts{memLimit: 32 << 20})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "hog"}); err != nil {
		t.Fatal(err)
	}
	sawOOM := false
	for !sawOOM {
		ev, err := sb.Agent.GetEvent(c, &api.GetEventRequest{})
		if err != nil {
			t.Fatalf("no OOM event: %v", err)
		}
		sawOOM = ev.GetType() == api.Event_OOM && ev.GetContainerId() == "hog"
	}
	w := waitProcess(t, sb, "hog", "")
	if !w.GetOomKilled() || w.GetStatus() != 137 {
		t.Fatalf("wait after OOM: %v, want oom_killed and status 137", w)
	}
}

// TestQEMUKilled: kill -9 of QEMU is noticed within 2 s, and stopping the VM afterwards leaves
// no process, socket or state directory.
func TestQEMUKilled(t *testing.T) {
	sb := boot(t)
	pid := sb.VM.PID()
	stateDir := sb.VM.ConsoleLog()[:strings.LastIndex(sb.VM.ConsoleLog(), "/")]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := sb.VM.Wait(wctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("QEMU's death not noticed within 2 s")
	}
	if err == nil {
		t.Fatalf("Wait after kill -9 returned no error")
	}
	t.Logf("noticed in %s: %v", time.Since(start).Round(time.Millisecond), err)
	if err := sb.Close(context.Background()); err != nil {
		t.Fatalf("close after QEMU died: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("QEMU pid %d still exists: %v", pid, err)
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Fatalf("state dir %s left behind: %v", stateDir, err)
	}
	if leftover := processesMentioning(stateDir); len(leftover) > 0 {
		t.Fatalf("processes left behind: %v", leftover)
	}
}

// processesMentioning lists the command lines of processes whose arguments contain s.
func processesMentioning(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), s) {
			found = append(found, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}
