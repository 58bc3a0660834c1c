package guestimage

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestIntegrationBoot boots the image under QEMU (TCG) with testdata/bootinit
// as /init, which loads every module of /etc/veil/modules.list and powers
// off. It checks that the kernel accepts the initrd and that every module
// loads in the listed order.
func TestIntegrationBoot(t *testing.T) {
	integration(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 not installed: apt-get install qemu-system-x86 (make deps)")
	}
	init := buildBootinit(t)
	out := t.TempDir()
	m, _ := build(t, Options{OutDir: out, Init: init})
	var log string
	log = bootOnce(t, qemu, out, m.Cmdline)
	if guestCrashed(log) {
		t.Fatalf("the guest kernel crashed:\n%s", tail(log, 30))
	}
	if !strings.Contains(log, "bootinit: done") {
		t.Fatalf("the guest did not run /init to the end:\n%s", log)
	}
	for _, p := range m.Modules {
		if !strings.Contains(log, "bootinit: module "+p+": loaded") {
			t.Errorf("module %s did not load", p)
		}
	}
	t.Logf("guest console:\n%s", log)
}

// bootOnce boots the image in dir once and returns the console output.
// QEMU 7.2's TCG mis-emulates cmpxchg16b, which this kernel's slab allocator uses, so cx16 is
// off as in the QEMU driver (see hypervisor/qemu tcgCPU).
func bootOnce(t *testing.T, qemu, dir, cmdline string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", "tcg", "-cpu", "max,cx16=off", "-m", "512",
		"-nographic", "-nodefaults", "-no-user-config", "-serial", "stdio", "-no-reboot",
		"-kernel", filepath.Join(dir, KernelFile), "-initrd", filepath.Join(dir, InitrdFile),
		"-append", cmdline)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		t.Fatalf("qemu: %v\n%s", err, buf.String())
	}
	return buf.String()
}

// guestCrashed reports whether the console shows a kernel oops or BUG.
func guestCrashed(log string) bool {
	for _, s := range []string{"Oops:", "BUG:", "kernel BUG", "Kernel panic"} {
		if strings.Contains(log, s) {
			return true
		}
	}
	return false
}

// buildBootinit compiles testdata/bootinit as a static binary.
func buildBootinit(t *testing.T) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatal("no go command to build the test init: install Go (https://go.dev/dl/) and put its bin directory on PATH")
		}
	}
	bin := filepath.Join(t.TempDir(), "bootinit")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, "./testdata/bootinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test init: %v\n%s", err, out)
	}
	return bin
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
