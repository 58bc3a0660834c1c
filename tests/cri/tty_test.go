//go:build e2e

package cri

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
)

// ptyReader collects what a pty's master reads.
type ptyReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *ptyReader) run(c console.Console) {
	b := make([]byte, 4096)
	for {
		n, err := c.Read(b)
		r.mu.Lock()
		r.buf.Write(b[:n])
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (r *ptyReader) waitFor(d time.Duration, want string) bool {
	return waitFor(d, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return strings.Contains(r.buf.String(), want)
	})
}

func (r *ptyReader) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// TestExecTerminalResize: `crictl exec -it` (what kubectl exec -it does through the kubelet)
// gets a terminal in the guest whose size follows the client's: the size at the start, then a
// resize (the client's SIGWINCH) reaches the process in the VM.
func TestExecTerminalResize(t *testing.T) {
	podID, podCfg := runPod(t, "tty")
	cid := startContainer(t, podID, podCfg, "shell", "exec sleep 3600")
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})

	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := master.Resize(console.WinSize{Height: 30, Width: 100}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Each line the shell reads makes it print its terminal's size, until the line "go". The
	// size travels (crictl, containerd, the shim, the agent) while the test keeps asking, so
	// no fixed wait stands for "the resize has arrived".
	cmd := env.crictlCmd(ctx, 2*time.Minute, "exec", "-it", cid, "sh", "-c",
		`while read line; do stty size; [ "$line" = go ] && break; done; echo done-$line`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &ptyReader{}
	go r.run(master)
	askSize := func(want string) bool {
		return waitFor(time.Minute, func() bool {
			if _, err := master.Write([]byte("size\n")); err != nil {
				return false
			}
			return r.waitFor(500*time.Millisecond, want)
		})
	}
	if !askSize("30 100") {
		_ = cmd.Process.Kill()
		t.Fatalf("the terminal in the guest does not have the client's size 30x100:\n%s", r)
	}
	// The client's terminal changes size: the kernel signals crictl, which tells the runtime.
	if err := master.Resize(console.WinSize{Height: 50, Width: 132}); err != nil {
		t.Fatal(err)
	}
	if !askSize("50 132") {
		_ = cmd.Process.Kill()
		t.Fatalf("the terminal in the guest was not resized to 50x132:\n%s", r)
	}
	if _, err := master.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if !r.waitFor(time.Minute, "done-go") {
		_ = cmd.Process.Kill()
		t.Fatalf("the exec did not finish:\n%s", r)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("crictl exec -it: %v\n%s", err, r)
	}
	t.Logf("crictl exec -it: %q", strings.ReplaceAll(r.String(), "\r", ""))
}
