//go:build e2e && load

package e2e

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/shim/stdio"
)

// The load of issue 12.
const (
	loadExecs       = 1000
	loadOutputBytes = 600 << 20 // 10 MiB/s for a minute
	// loadRSSGrowth bounds how much the agent's resident memory may grow over each load: it
	// keeps a bounded number of exited execs and bounded stream buffers, so neither 1,000
	// execs nor 600 MiB of output may show in it.
	loadRSSGrowth = 16 << 20
)

// yesCounter counts the bytes of `yes` output ("y\n" repeated) written to it and fails on
// the first byte out of that pattern: a lost, doubled or changed byte shows.
type yesCounter struct {
	n   int64
	bad error
}

func (c *yesCounter) Write(p []byte) (int, error) {
	for i, b := range p {
		want := byte('y')
		if (c.n+int64(i))%2 == 1 {
			want = '\n'
		}
		if b != want && c.bad == nil {
			c.bad = fmt.Errorf("byte %d of the output is %q, want %q", c.n+int64(i), b, want)
		}
	}
	c.n += int64(len(p))
	return len(p), nil
}

func agentRSS(t *testing.T, sb *sandbox.Sandbox) int64 {
	t.Helper()
	d, err := sb.Agent.GetGuestDetails(ctx(t, 30*time.Second), &api.GetGuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return int64(d.GetAgentRssBytes())
}

// TestLoad (issue 12): 1,000 ExecProcess requests in one running container, each one's
// output read to its end (every byte checked) and its exit waited for, then 600 MiB of one
// process's output (10 MiB/s for a minute, as fast as the path goes here) counted byte for
// byte; the agent's resident memory stays flat through both. It takes minutes under TCG (an
// exec is a few hundred ms), so it runs in `make bench` (build tag load), not `make test`.
func TestLoad(t *testing.T) {
	sb := boot(t)
	c := ctx(t, 30*time.Minute)
	newContainer(t, sb, "loaded", []string{"sleep", "100000"}, containerOpts{})
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "loaded"}); err != nil {
		t.Fatal(err)
	}
	run := func(execID string, w *bytes.Buffer, args ...string) {
		p := &api.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}}
		if _, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "loaded", ExecId: execID, Process: p}); err != nil {
			t.Fatalf("exec %s: %v", execID, err)
		}
		if err := (stdio.Process{Agent: sb.Agent, ContainerID: "loaded", ExecID: execID}).CopyStdout(c, w); err != nil {
			t.Fatal(err)
		}
		if w := waitProcess(t, sb, "loaded", execID); w.GetStatus() != 0 {
			t.Fatalf("exec %s: status %d", execID, w.GetStatus())
		}
	}
	for i := range 10 { // warm up: the agent's caches and pools
		run(fmt.Sprintf("warm-%d", i), new(bytes.Buffer), "true")
	}
	before := agentRSS(t, sb)

	start := time.Now()
	for i := range loadExecs {
		var out bytes.Buffer
		run(fmt.Sprintf("load-%d", i), &out, "echo", fmt.Sprint("exec-", i))
		if want := fmt.Sprintf("exec-%d\n", i); out.String() != want {
			t.Fatalf("exec %d printed %q, want %q", i, out.String(), want)
		}
	}
	execTime := time.Since(start)
	afterExecs := agentRSS(t, sb)
	t.Logf("%d execs in %s (%.1f/s); agent RSS %d → %d MiB", loadExecs, execTime.Round(time.Millisecond),
		float64(loadExecs)/execTime.Seconds(), before>>20, afterExecs>>20)
	if afterExecs-before > loadRSSGrowth {
		t.Errorf("the agent's RSS grew by %d MiB over %d execs", (afterExecs-before)>>20, loadExecs)
	}

	p := &api.Process{Args: []string{"sh", "-c", fmt.Sprintf("yes | head -c %d", loadOutputBytes)}, Cwd: "/", Env: []string{"PATH=/bin"}}
	if _, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "loaded", ExecId: "output", Process: p}); err != nil {
		t.Fatal(err)
	}
	count := &yesCounter{}
	start = time.Now()
	if err := (stdio.Process{Agent: sb.Agent, ContainerID: "loaded", ExecID: "output"}).CopyStdout(c, count); err != nil {
		t.Fatal(err)
	}
	outTime := time.Since(start)
	if w := waitProcess(t, sb, "loaded", "output"); w.GetStatus() != 0 {
		t.Fatalf("the output process: status %d", w.GetStatus())
	}
	afterOutput := agentRSS(t, sb)
	t.Logf("%d MiB of output in %s (%.1f MiB/s); agent RSS %d MiB", count.n>>20, outTime.Round(time.Millisecond),
		float64(count.n)/(1<<20)/outTime.Seconds(), afterOutput>>20)
	if count.bad != nil || count.n != loadOutputBytes {
		t.Fatalf("output: %d bytes (want %d), %v", count.n, loadOutputBytes, count.bad)
	}
	if afterOutput-before > loadRSSGrowth {
		t.Errorf("the agent's RSS grew by %d MiB over the execs and %d MiB of output", (afterOutput-before)>>20, loadOutputBytes>>20)
	}
}
