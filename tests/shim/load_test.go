//go:build e2e && load

package shim

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/veil-runtime/veil/tests/internal/yescount"
)

// The load of issue 12, through containerd and the shim.
const (
	shimLoadExecs       = 1000
	shimLoadOutputBytes = 200 << 20
	// shimRSSGrowth bounds how much the shim's resident memory may grow over the load: it
	// forgets an exec once containerd deleted it, and relays output through fixed buffers.
	shimRSSGrowth = 16 << 20
)

// TestShimLoad (issue 12): 1,000 `ctr task exec` in one running container, each one's output
// checked and its exit code read, then 200 MiB of one exec's output through the shim and
// containerd's FIFOs, counted byte for byte; the shim's resident memory stays flat through
// both. tests/e2e TestLoad loads the agent the same way without the shim. It takes minutes
// under TCG, so it runs in `make bench` (build tag load), not `make test`.
func TestShimLoad(t *testing.T) {
	id := uniqueID(t, "c")
	detached(t, id, "exec sleep 100000")
	pids := shimPIDs(id)
	if len(pids) != 1 {
		t.Fatalf("shims of %s: %v, want one", id, pids)
	}
	rss := func() int64 { return int64(procKiB(t, pids[0], "status", "VmRSS:")) << 10 }
	for i := range 10 { // warm up
		mustCtr(t, time.Minute, "task", "exec", "--exec-id", fmt.Sprint("warm-", i), id, "true")
	}
	before := rss()

	start := time.Now()
	for i := range shimLoadExecs {
		r := ctr(t, time.Minute, "task", "exec", "--exec-id", fmt.Sprint("load-", i), id, "sh", "-c", fmt.Sprintf("echo exec-%d; exit %d", i, i%7))
		if want := fmt.Sprintf("exec-%d\n", i); r.stdout != want || r.code != i%7 {
			t.Fatalf("exec %d: exit %d, stdout %q, stderr %q; want %d and %q", i, r.code, r.stdout, r.stderr, i%7, want)
		}
	}
	execTime := time.Since(start)
	afterExecs := rss()
	t.Logf("%d execs through ctr in %s (%.1f/s); shim RSS %d → %d MiB", shimLoadExecs, execTime.Round(time.Millisecond),
		float64(shimLoadExecs)/execTime.Seconds(), before>>20, afterExecs>>20)
	if afterExecs-before > shimRSSGrowth {
		t.Errorf("the shim's RSS grew by %d MiB over %d execs", (afterExecs-before)>>20, shimLoadExecs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	count := &yescount.Counter{}
	cmd := env.ctrCmd(ctx, "task", "exec", "--exec-id", "output", id, "sh", "-c", fmt.Sprintf("yes | head -c %d", shimLoadOutputBytes))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = count, &stderr
	start = time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("the output exec: %v: %s", err, stderr.String())
	}
	outTime := time.Since(start)
	afterOutput := rss()
	t.Logf("%d MiB of output through the shim in %s (%.1f MiB/s); shim RSS %d MiB", count.N>>20, outTime.Round(time.Millisecond),
		float64(count.N)/(1<<20)/outTime.Seconds(), afterOutput>>20)
	if err := count.Check(shimLoadOutputBytes); err != nil {
		t.Fatalf("output: %v", err)
	}
	if afterOutput-before > shimRSSGrowth {
		t.Errorf("the shim's RSS grew by %d MiB over the execs and %d MiB of output", (afterOutput-before)>>20, shimLoadOutputBytes>>20)
	}
}
