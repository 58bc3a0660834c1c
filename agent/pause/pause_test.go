package pause

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the pause process when started as "pause", the way
// the guest image's /init does.
func TestMain(m *testing.M) {
	if Requested() {
		Run()
	}
	os.Exit(m.Run())
}

// The pause process runs until SIGTERM or SIGINT, then exits 0.
func TestPause(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := &exec.Cmd{Path: exe, Args: []string{"/pause"}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("pause ended by itself: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("pause after %v: %v, want exit 0", sig, err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("pause did not exit on %v", sig)
		}
	}
}

func TestRequested(t *testing.T) {
	saved := os.Args
	defer func() { os.Args = saved }()
	for arg0, want := range map[string]bool{"/pause": true, "pause": true, "/init": false, "/usr/bin/veil-agent": false, "pause.sh": false} {
		os.Args = []string{arg0}
		if Requested() != want {
			t.Errorf("Requested() with argv[0] %q = %v, want %v", arg0, !want, want)
		}
	}
}

// run reaps children that end while it waits, so none stays a zombie.
func TestReaps(t *testing.T) {
	sigs := make(chan os.Signal, 8)
	done := make(chan int, 1)
	go func() { done <- run(sigs) }()
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			break // reaped: no zombie left
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d not reaped: %s", pid, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sigs <- syscall.SIGTERM
	if code := <-done; code != 0 {
		t.Fatalf("run returned %d", code)
	}
}
