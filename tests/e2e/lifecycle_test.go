//go:build e2e

package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/shim/stdio"
)

// testLifecycle: stats, pause, resume, update and remove of a running container.
func testLifecycle(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, 2*time.Minute)
	newContainer(t, sb, "life", []string{"sh", "-c", "while true; do sleep 1; done"}, containerOpts{memLimit: 64 << 20})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "life"}); err != nil {
		t.Fatal(err)
	}
	st, err := sb.Agent.StatsContainer(c, &api.StatsContainerRequest{ContainerId: "life"})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetMemoryUsageBytes() == 0 || st.GetMemoryLimitBytes() != 64<<20 || st.GetPidsCurrent() == 0 {
		t.Fatalf("stats: %v (want memory usage, the 64 MiB limit and pids)", st)
	}
	if _, err := sb.Agent.PauseContainer(c, &api.PauseContainerRequest{ContainerId: "life"}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Agent.ResumeContainer(c, &api.ResumeContainerRequest{ContainerId: "life"}); err != nil {
		t.Fatal(err)
	}
	_, err = sb.Agent.UpdateContainer(c, &api.UpdateContainerRequest{ContainerId: "life",
		Resources: &api.Resources{MemoryLimitBytes: 96 << 20, MemorySwapBytes: 96 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	if st, err = sb.Agent.StatsContainer(c, &api.StatsContainerRequest{ContainerId: "life"}); err != nil || st.GetMemoryLimitBytes() != 96<<20 {
		t.Fatalf("after update: limit %d, %v; want %d", st.GetMemoryLimitBytes(), err, 96<<20)
	}
	if _, err := sb.Agent.RemoveContainer(c, &api.RemoveContainerRequest{ContainerId: "life", TimeoutMs: 2000}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Agent.StatsContainer(c, &api.StatsContainerRequest{ContainerId: "life"}); err == nil {
		t.Fatal("stats of a removed container succeeded")
	}
}

// testTerminal: a container with a terminal sees a tty, and its output arrives on stdout.
func testTerminal(t *testing.T, sb *sandbox.Sandbox) {
	c := ctx(t, time.Minute)
	newContainer(t, sb, "tty", []string{"sh", "-c", "tty; stty size"}, containerOpts{terminal: true})
	p := stdio.Process{Agent: sb.Agent, ContainerID: "tty"}
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- p.CopyStdout(c, &out) }()
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "tty"}); err != nil {
		t.Fatal(err)
	}
	if w := waitProcess(t, sb, "tty", ""); w.GetStatus() != 0 {
		t.Fatalf("terminal container exited %d", w.GetStatus())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "/dev/pts/") {
		t.Fatalf("terminal container output %q does not show a pts", out.String())
	}
}
