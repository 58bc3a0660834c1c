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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handler is the CRI runtime handler under test.
const handler = "veil"

var (
	imageDir, binDir string
	env              *criEnv
)

func TestMain(m *testing.M) {
	imageDir, binDir = os.Getenv("VEIL_IMAGE"), os.Getenv("VEIL_BIN")
	if imageDir == "" || binDir == "" {
		fmt.Fprintln(os.Stderr, "tests/cri: VEIL_IMAGE and VEIL_BIN are not set: run `make e2e`")
		os.Exit(1)
	}
	var err error
	env, err = startEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests/cri:", err)
		if env != nil {
			env.stop()
		}
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "containerd log (last lines):\n%s\n", tail(env.logPath, 120))
	}
	env.stop()
	os.Exit(code)
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
	full := append([]string{"--runtime-endpoint", "unix://" + e.socket, "--image-endpoint",
		"unix://" + e.socket, "--timeout", timeout.String()}, args...)
	cmd := exec.CommandContext(ctx, e.crictlBin, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return out.String(), errb.String(), err
}

// waitFor polls cond every 100 ms until it holds or d passed.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func toolPath(name string) (string, error) {
	for _, dir := range []string{filepath.Join(binDir, "tools"), binDir} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(name)
}
