//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestNamedVM drives a running VM from other processes: exec, ps, raw calls and kill.
func TestNamedVM(t *testing.T) {
	const name = "e2e-named"
	os.RemoveAll(filepath.Join("/run/veil/ctl", name)) // left by an earlier run that was killed
	run := exec.Command(filepath.Join(binDir, "veil-ctl"), "run", "-q", "--name", name,
		"--image", imageDir, "--rootfs", rootfs, "--", "sleep", "1000")
	var runErr bytes.Buffer
	run.Stderr = &runErr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	defer func() {
		run.Process.Kill()
		<-exited
	}()
	sock := filepath.Join("/run/veil/ctl", name, "agent.sock")
	waitFor(t, 2*time.Minute, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("veil-ctl run ended early: %v\n%s", err, runErr.String())
		default:
		}
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "control socket "+sock)

	out, errOut, code := veilCtl(t, nil, "exec", "--name", name, "--", "sh", "-c", "echo exec-ok; exit 4")
	if code != 4 || out != "exec-ok\n" {
		t.Fatalf("exec: exit %d stdout %q stderr %q, want 4 and exec-ok", code, out, errOut)
	}
	if out, errOut, code = veilCtl(t, nil, "ps", "--name", name); code != 0 || !strings.Contains(out, "sleep 1000") {
		t.Fatalf("ps: exit %d, output %q %q", code, out, errOut)
	}
	if out, errOut, code = veilCtl(t, nil, "call", "--name", name, "Check"); code != 0 || !strings.Contains(out, "SERVING") {
		t.Fatalf("call Check: exit %d, output %q %q", code, out, errOut)
	}
	_, errOut, code = veilCtl(t, nil, "call", "--name", name, "CopyFile", `{"path":"/run/veil/../etc/passwd","data":"eA=="}`)
	if code == 0 || !strings.Contains(errOut, "..") {
		t.Fatalf("call CopyFile with '..': exit %d, stderr %q; want a refusal naming the '..'", code, errOut)
	}
	// Without initdata the VM runs allow-all, which lets the host read the decision log.
	out, errOut, code = veilCtl(t, nil, "decisions", "--name", name)
	if code != 0 || !strings.Contains(out, `"method":"CopyFile"`) || strings.Contains(out, "etc/passwd") {
		t.Fatalf("decisions: exit %d, output %q %q; want the CopyFile decision without its path", code, out, errOut)
	}
	if _, errOut, code = veilCtl(t, nil, "kill", "--name", name, "KILL"); code != 0 {
		t.Fatalf("kill: exit %d: %s", code, errOut)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 137 {
			t.Fatalf("run after kill KILL: %v, want exit status 137; stderr %s", err, runErr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not end after kill KILL")
	}
	exited <- nil // for the deferred cleanup
	if _, err := os.Stat(filepath.Dir(sock)); !os.IsNotExist(err) {
		t.Fatalf("control directory left behind: %v", err)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
