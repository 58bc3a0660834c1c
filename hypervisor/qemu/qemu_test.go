package qemu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veil-runtime/veil/hypervisor"
)

// requireQEMU skips tests that need a real QEMU when there is none.
func requireQEMU(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(DefaultQEMU); err != nil {
		t.Fatal("needs qemu-system-x86_64: apt-get install qemu-system-x86")
	}
}

// stateRoot is a short directory (unix socket paths are limited) removed after the test.
func stateRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "veil-qt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// firmwareOnly is a VM without a kernel: SeaBIOS finds nothing to boot and idles, which is
// enough to exercise the lifecycle without a guest image.
func firmwareOnly(t *testing.T, root string) hypervisor.Config {
	return hypervisor.Config{
		ID:       "test",
		StateDir: filepath.Join(root, "vm"),
		Accel:    hypervisor.AccelTCG,
		Machine:  "q35",
	}
}

func startVM(t *testing.T, cfg hypervisor.Config, opts ...Option) *VM {
	t.Helper()
	v, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := v.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = v.Stop(context.Background()) })
	return v
}

// requireGone fails unless pid has exited and the state dir is removed.
func requireGone(t *testing.T, pids []int, stateDir string) {
	t.Helper()
	for _, pid := range pids {
		deadline := time.Now().Add(2 * time.Second)
		for processExists(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if processExists(pid) {
			t.Errorf("process %d still runs", pid)
		}
	}
	if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s still exists (err %v)", stateDir, err)
	}
}

// processExists is true for a live, non-zombie process.
func processExists(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z"
}

func TestIntegrationLifecycle(t *testing.T) {
	requireQEMU(t)
	root := stateRoot(t)
	cfg := firmwareOnly(t, root)
	v := startVM(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := v.Start(ctx); !errors.Is(err, hypervisor.ErrAlreadyStarted) {
		t.Errorf("second Start = %v, want ErrAlreadyStarted", err)
	}
	st, err := v.qmp.QueryStatus(ctx)
	if err != nil || !st.Running || st.Status != "running" {
		t.Fatalf("query-status = %+v, %v; want running", st, err)
	}
	pid := v.PID()
	for _, f := range []string{"qmp.sock", "agent.sock", "console.log", "owner", "qemu.pid"} {
		if _, err := os.Stat(filepath.Join(cfg.StateDir, f)); err != nil {
			t.Errorf("state dir lacks %s: %v", f, err)
		}
	}
	// No guest answers on the agent port: DialAgent gives up when its ctx ends.
	dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = v.DialAgent(dctx)
	dcancel()
	if err == nil || !strings.Contains(err.Error(), "virtio-serial") {
		t.Errorf("DialAgent without a guest = %v, want a virtio-serial timeout", err)
	}
	waitErr := make(chan error, 2)
	for range 2 {
		go func() { waitErr <- v.Wait(context.Background()) }()
	}
	if err := v.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for range 2 {
		if err := <-waitErr; err != nil {
			t.Errorf("Wait after a graceful Stop = %v, want nil", err)
		}
	}
	requireGone(t, []int{pid}, cfg.StateDir)
	if err := v.Stop(ctx); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	if _, err := v.DialAgent(ctx); err == nil {
		t.Error("DialAgent after Stop succeeded")
	}
}

func TestIntegrationKill9(t *testing.T) {
	requireQEMU(t)
	root := stateRoot(t)
	cfg := firmwareOnly(t, root)
	v := startVM(t, cfg)
	pid := v.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := v.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "killed by signal 9") {
		t.Fatalf("Wait after kill -9 = %v, want an error saying QEMU was killed", err)
	}
	start := time.Now()
	if _, err := v.DialAgent(context.Background()); err == nil || !strings.Contains(err.Error(), "has exited") ||
		time.Since(start) > time.Second {
		t.Errorf("DialAgent to a dead VM = %v after %s, want a prompt error", err, time.Since(start))
	}
	if err := v.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireGone(t, []int{pid}, cfg.StateDir)
}

func TestIntegrationStopForce(t *testing.T) {
	requireQEMU(t)
	root := stateRoot(t)
	cfg := firmwareOnly(t, root)
	v := startVM(t, cfg, WithPowerdownGrace(200*time.Millisecond))
	pid := v.PID()
	// SeaBIOS ignores the power button and a stopped QEMU cannot quit: only SIGKILL is left.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	if err := v.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %s with a 1s context", d)
	}
	if err := v.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Wait after forced Stop = %v, want killed", err)
	}
	requireGone(t, []int{pid}, cfg.StateDir)
}

func TestIntegrationStartFailureCleansUp(t *testing.T) {
	requireQEMU(t)
	root := stateRoot(t)
	cfg := firmwareOnly(t, root)
	cfg.Kernel = filepath.Join(root, "no-such-kernel")
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = v.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "no-such-kernel") {
		t.Fatalf("Start = %v, want an error naming the missing kernel", err)
	}
	t.Logf("Start error: %v", err)
	if werr := v.Wait(ctx); werr == nil {
		t.Error("Wait after a failed Start = nil")
	}
	requireGone(t, nil, cfg.StateDir)
	if err := v.Stop(ctx); err != nil {
		t.Errorf("Stop after a failed Start = %v", err)
	}
}

func TestNotStarted(t *testing.T) {
	v, err := New(firmwareOnly(t, "/run/veil-test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := v.Wait(ctx); !errors.Is(err, hypervisor.ErrNotStarted) {
		t.Errorf("Wait = %v", err)
	}
	if _, err := v.DialAgent(ctx); !errors.Is(err, hypervisor.ErrNotStarted) {
		t.Errorf("DialAgent = %v", err)
	}
	if v.PID() != 0 {
		t.Errorf("PID = %d", v.PID())
	}
	if err := v.Stop(ctx); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if err := v.Start(ctx); err == nil {
		t.Error("Start after Stop succeeded")
	}
}
