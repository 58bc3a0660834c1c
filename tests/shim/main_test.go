//go:build e2e

// Package shim runs the Veil containerd shim under a real containerd 2.4 that the tests start
// in a temporary root, on their own socket, driven through ctr. Run with `make e2e` (it builds
// the guest image and the binaries and sets VEIL_IMAGE and VEIL_BIN); containerd and ctr come
// from scripts/containerd.sh (bin/tools).
package shim

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// runtime is the runtime type under test.
const runtime = "io.containerd.veil.v2"

var (
	imageDir, binDir string
	env              *containerdEnv
)

func TestMain(m *testing.M) {
	containerdenv.Main(m, "tests/shim", 80, startContainerd)
}

// ctrResult is one ctr invocation's outcome.
type ctrResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// ctr runs ctr against the test's containerd.
func ctr(t testing.TB, timeout time.Duration, args ...string) ctrResult {
	t.Helper()
	return ctrOn(t, env, timeout, args...)
}

// ctrOn runs ctr against containerd e.
func ctrOn(t testing.TB, e *containerdEnv, timeout time.Duration, args ...string) ctrResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := e.ctrCmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := ctrResult{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ctr %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("ctr %s: timed out after %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), timeout, r.stdout, r.stderr)
	}
	return r
}

// mustCtr runs ctr and fails the test unless it exits 0.
func mustCtr(t testing.TB, timeout time.Duration, args ...string) string {
	t.Helper()
	r := ctr(t, timeout, args...)
	if r.code != 0 {
		t.Fatalf("ctr %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// runArgs are the arguments of `ctr run` with the Veil runtime.
func runArgs(extra ...string) []string {
	return append([]string{"run", "--runtime", runtime}, extra...)
}

// uniqueID names a container after the test.
func uniqueID(t testing.TB, suffix string) string {
	name := strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(t.Name()))
	return fmt.Sprintf("%s-%s-%d", name, suffix, time.Now().UnixNano()%100000)
}

// detached starts `sh -c script` in a container of its own and removes it when the test ends.
func detached(t *testing.T, id, script string, extra ...string) {
	t.Helper()
	args := runArgs(append([]string{"-d"}, extra...)...)
	mustCtr(t, 2*time.Minute, append(args, env.image, id, "sh", "-c", script)...)
	t.Cleanup(func() { removeContainer(t, id) })
}

// removeContainer kills, deletes and removes a container, whatever its state.
func removeContainer(t testing.TB, id string) {
	ctr(t, time.Minute, "task", "kill", "-s", "SIGKILL", id)
	for i := 0; i < 50; i++ {
		r := ctr(t, time.Minute, "task", "delete", id)
		if r.code == 0 || strings.Contains(r.stderr, "not found") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctr(t, time.Minute, "container", "delete", id)
}

// taskStatus is the STATUS column of `ctr task ls` for id ("" when absent).
func taskStatus(t testing.TB, id string) string {
	out := mustCtr(t, time.Minute, "task", "ls")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// waitFor polls cond every 50 ms until it holds or d passed.
func waitFor(d time.Duration, cond func() bool) bool {
	return containerdenv.WaitFor(d, 50*time.Millisecond, cond)
}
