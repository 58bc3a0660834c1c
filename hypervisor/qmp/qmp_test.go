package qmp

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// startQEMU runs a paused, firmware-only QEMU with a QMP socket and returns the socket path.
func startQEMU(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("needs qemu-system-x86_64: apt-get install qemu-system-x86")
	}
	dir, err := os.MkdirTemp("", "veil-qmp-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command(bin, "-machine", "q35", "-accel", "tcg", "-nodefaults", "-no-user-config",
		"-display", "none", "-S", "-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		os.RemoveAll(dir)
	})
	return sock, cmd
}

func TestIntegrationQMP(t *testing.T) {
	sock, _ := startQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var handled []string
	c, err := Dial(ctx, sock, WithEventHandler(func(e Event) {
		mu.Lock()
		handled = append(handled, e.Name)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if v := c.Version(); v.Major < 7 {
		t.Errorf("version %+v", v)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil || st.Running || st.Status != "prelaunch" {
		t.Fatalf("query-status = %+v, %v; want prelaunch", st, err)
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatalf("cont: %v", err)
	}
	requireEvent(t, c, "RESUME")

	// Many callers at once each get their own reply.
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := c.QueryStatus(ctx); err != nil || !st.Running {
				t.Errorf("concurrent query-status = %+v, %v", st, err)
			}
		}()
	}
	wg.Wait()

	var qerr *Error
	if _, err := c.Execute(ctx, "no-such-command", nil); !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v, want a CommandNotFound *Error", err)
	}
	if _, err := c.Execute(ctx, "query-status", map[string]int{"bogus": 1}); !errors.As(err, &qerr) {
		t.Errorf("bad arguments: %v, want *Error", err)
	}
	if err := c.SystemPowerdown(ctx); err != nil {
		t.Fatalf("system_powerdown: %v", err)
	}
	requireEvent(t, c, "POWERDOWN")
	if err := c.Quit(ctx); err != nil {
		t.Fatalf("quit: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("connection still open after quit")
	}
	if _, err := c.QueryStatus(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("query-status after quit = %v, want ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(handled) < 2 || handled[0] != "RESUME" {
		t.Errorf("handler saw %v", handled)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after quit: %v", err)
	}
}

func requireEvent(t *testing.T, c *Client, name string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed before %s", name)
			}
			if e.Name == name {
				if e.Timestamp.IsZero() {
					t.Errorf("%s has no timestamp", name)
				}
				return
			}
		case <-timeout:
			t.Fatalf("no %s event", name)
		}
	}
}

func TestIntegrationCloseUnblocksExecute(t *testing.T) {
	sock, cmd := startQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Execute(ctx, "query-status", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Execute after Close = %v, want ErrClosed", err)
	}
	_ = cmd.Process.Kill()
}

func TestDialTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, filepath.Join(t.TempDir(), "none.sock"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want a deadline error", err)
	}
}
