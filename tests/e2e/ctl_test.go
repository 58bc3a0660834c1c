//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// veilCtl runs the veil-ctl binary and returns stdout, stderr and the exit status.
func veilCtl(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "veil-ctl"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &exitErr):
		return out.String(), errb.String(), exitErr.ExitCode()
	default:
		t.Fatalf("veil-ctl %v: %v", args, err)
		return "", "", 0
	}
}

func TestRunEcho(t *testing.T) {
	out, errOut, code := veilCtl(t, nil, "run", "-q", "--image", imageDir, "--rootfs", rootfs, "--", "echo", "hello from veil")
	if code != 0 || out != "hello from veil\n" {
		t.Fatalf("got exit %d, stdout %q; stderr:\n%s", code, out, errOut)
	}
}

func TestRunExitCode(t *testing.T) {
	out, errOut, code := veilCtl(t, nil, "run", "-q", "--image", imageDir, "--rootfs", rootfs, "--", "sh", "-c", "echo to-stderr >&2; exit 7")
	if code != 7 {
		t.Fatalf("got exit %d, want 7; stdout %q stderr:\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "to-stderr\n") {
		t.Fatalf("stderr of the container not relayed: %q", errOut)
	}
}

func TestRunStdinMiB(t *testing.T) {
	in := make([]byte, 1<<20)
	rand.Read(in)
	out, errOut, code := veilCtl(t, in, "run", "-q", "-i", "--image", imageDir, "--rootfs", rootfs, "--", "cat")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	if !bytes.Equal([]byte(out), in) {
		t.Fatalf("1 MiB through cat came back as %d bytes, not byte for byte", len(out))
	}
}
