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
	"github.com/veil-runtime/veil/tests/internal/yescount"
)

// The load of issue 12.
const (
	loadExecs       = 1000
	loadOutputBytes = 600 << 20 // 10 MiB/s for a minute
	loadFloorBytes  = 100 << 20 // the guest's own rate, to /dev/null
	// loadRSSGrowth bounds how much the agent's resident memory may grow over each load: it
	// keeps a bounded number of exited execs and bounded stream buffers, so neither 1,000
	// execs nor 600 MiB of output may show in it.
	loadRSSGrowth = 16 << 20
)

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

	// The guest's own floor: how fast `yes | head` runs in the container when its output goes
	// to /dev/null rather than through the agent (an exec's own cost, measured with `true`,
	// taken off), so that the rate below can be read against what the emulated CPU allows.
	timed := func(execID string, args ...string) time.Duration {
		began := time.Now()
		run(execID, new(bytes.Buffer), args...)
		return time.Since(began)
	}
	execCost := timed("floor-true", "true")
	floorTime := timed("floor", "sh", "-c", fmt.Sprintf("yes | head -c %d >/dev/null", loadFloorBytes)) - execCost
	floor := float64(loadFloorBytes) / (1 << 20) / floorTime.Seconds()
	t.Logf("in the guest, to /dev/null: %d MiB in %s (%.1f MiB/s; an exec's own cost %s taken off)", loadFloorBytes>>20,
		floorTime.Round(time.Millisecond), floor, execCost.Round(time.Millisecond))

	p := &api.Process{Args: []string{"sh", "-c", fmt.Sprintf("yes | head -c %d", loadOutputBytes)}, Cwd: "/", Env: []string{"PATH=/bin"}}
	if _, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "loaded", ExecId: "output", Process: p}); err != nil {
		t.Fatal(err)
	}
	count := &yescount.Counter{}
	start = time.Now()
	if err := (stdio.Process{Agent: sb.Agent, ContainerID: "loaded", ExecID: "output"}).CopyStdout(c, count); err != nil {
		t.Fatal(err)
	}
	outTime := time.Since(start)
	if w := waitProcess(t, sb, "loaded", "output"); w.GetStatus() != 0 {
		t.Fatalf("the output process: status %d", w.GetStatus())
	}
	afterOutput := agentRSS(t, sb)
	t.Logf("%d MiB of output in %s (%.1f MiB/s); agent RSS %d MiB", count.N>>20, outTime.Round(time.Millisecond),
		float64(count.N)/(1<<20)/outTime.Seconds(), afterOutput>>20)
	t.Logf("output through the agent ÷ the guest's floor: %.2f", float64(count.N)/(1<<20)/outTime.Seconds()/floor)
	if err := count.Check(loadOutputBytes); err != nil {
		t.Fatalf("output: %v", err)
	}
	if afterOutput-before > loadRSSGrowth {
		t.Errorf("the agent's RSS grew by %d MiB over the execs and %d MiB of output", (afterOutput-before)>>20, loadOutputBytes>>20)
	}
}
