//go:build e2e

// Package cri runs the Veil shim under containerd 2.4's CRI plugin, driven by crictl: a
// containerd started by the tests in a temporary root, images from an in-process registry on
// loopback, CNI's bridge plugin (Debian's containernetworking-plugins) for pod networking.
// Run with `make e2e` (it sets VEIL_IMAGE and VEIL_BIN); containerd comes from
// scripts/containerd.sh and crictl from scripts/cri-tools.sh (bin/tools).
package cri

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

// handler is the CRI runtime handler under test.
const handler = "veil"

var (
	imageDir, binDir string
	env              *criEnv
)

func TestMain(m *testing.M) {
	containerdenv.Main(m, "tests/cri", 120, startEnv)
}

// crictl runs crictl against the test's containerd and returns its stdout; it fails the test
// unless crictl exits 0.
func crictl(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := env.crictl(2*time.Minute, args...)
	if err != nil {
		t.Fatalf("crictl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return strings.TrimSpace(out)
}

// crictl runs crictl with a timeout.
func (e *criEnv) crictl(timeout time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := e.crictlCmd(ctx, timeout, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return out.String(), errb.String(), err
}

// crictlCmd is crictl with args against the test's containerd; timeout bounds each request.
func (e *criEnv) crictlCmd(ctx context.Context, timeout time.Duration, args ...string) *exec.Cmd {
	full := append([]string{"--runtime-endpoint", "unix://" + e.Socket, "--image-endpoint",
		"unix://" + e.Socket, "--timeout", timeout.String()}, args...)
	return exec.CommandContext(ctx, e.crictlBin, full...)
}

// waitFor polls cond every 100 ms until it holds or d passed.
func waitFor(d time.Duration, cond func() bool) bool {
	return containerdenv.WaitFor(d, 100*time.Millisecond, cond)
}
