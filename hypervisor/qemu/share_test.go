package qemu

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/hypervisor/statedir"
)

func requireVirtiofsd(t *testing.T) {
	t.Helper()
	if _, err := newOptions(nil).virtiofsdBinary(); err != nil {
		t.Fatal("needs virtiofsd: apt-get install qemu-system-common (7.2) or virtiofsd")
	}
	if os.Geteuid() != 0 {
		t.Fatal("virtiofsd needs root for its namespace sandbox")
	}
}

func TestIntegrationVirtiofs(t *testing.T) {
	requireQEMU(t)
	requireVirtiofsd(t)
	root := stateRoot(t)
	rw, ro := filepath.Join(root, "rw"), filepath.Join(root, "ro")
	for _, d := range []string{rw, ro} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := firmwareOnly(t, root)
	cfg.SharedDirs = []hypervisor.SharedDir{{Tag: "rw", HostPath: rw}, {Tag: "ro", HostPath: ro, ReadOnly: true}}
	v := startVM(t, cfg)
	if len(v.fsds) != 2 {
		t.Fatalf("%d virtiofsd running, want 2", len(v.fsds))
	}
	pids := []int{v.PID()}
	for i, p := range v.fsds {
		pids = append(pids, p.pid())
		if p.exited() {
			t.Fatalf("virtiofsd %d exited: %v: %s", i, p.err, p.logTail())
		}
		if _, err := os.Stat(filepath.Join(cfg.StateDir, fsSocket(i))); err != nil {
			t.Errorf("no socket for share %d: %v", i, err)
		}
	}
	if !mountedReadOnly(t, v.fsds[1].pid(), ro) {
		t.Errorf("the read-only share %s is not mounted read-only in virtiofsd's namespace", ro)
	}
	if mountedReadOnly(t, v.fsds[0].pid(), rw) {
		t.Errorf("the read-write share %s is mounted read-only", rw)
	}
	if mountedReadOnly(t, os.Getpid(), ro) {
		t.Errorf("the read-only bind mount leaked into the host's namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireGone(t, pids, cfg.StateDir)
}

// TestIntegrationVirtiofsdKilled (issue 12): a virtiofsd killed while its VM runs takes the
// VM down (a guest on a dead share would hang on every access): Wait names the share and the
// signal, QEMU and the other share's virtiofsd are gone, and Stop leaves nothing.
func TestIntegrationVirtiofsdKilled(t *testing.T) {
	requireQEMU(t)
	requireVirtiofsd(t)
	root := stateRoot(t)
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := firmwareOnly(t, root)
	cfg.SharedDirs = []hypervisor.SharedDir{{Tag: "a", HostPath: a}, {Tag: "b", HostPath: b}}
	v := startVM(t, cfg)
	pids := []int{v.PID(), v.fsds[0].pid(), v.fsds[1].pid()}
	if err := syscall.Kill(v.fsds[1].pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := v.Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), `virtiofsd of shared dir "b"`) || !strings.Contains(err.Error(), "killed by signal 9") {
		t.Fatalf("Wait after virtiofsd was killed = %v, want an error naming share b's virtiofsd and the signal", err)
	}
	if err := v.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	requireGone(t, pids, cfg.StateDir)
}

// mountedReadOnly reports whether pid sees path through a read-only mount: mounted at path,
// or (once virtiofsd has pivoted into the share) as the root of its "/".
func mountedReadOnly(t *testing.T, pid int, path string) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		t.Fatalf("read mountinfo of %d: %v", pid, err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text()) // 3: root, 4: mount point, 5: mount options
		if len(fields) < 6 || !strings.HasPrefix(fields[5], "ro,") {
			continue
		}
		if fields[4] == path || (fields[3] == path && fields[4] == "/") {
			return true
		}
	}
	return false
}

const ownerEnv = "VEIL_QEMU_TEST_OWNER"

// TestMain lets a test re-run this binary as a VM owner that a test can SIGKILL.
func TestMain(m *testing.M) {
	if dir := os.Getenv(ownerEnv); dir != "" {
		runOwner(dir)
		return
	}
	os.Exit(m.Run())
}

// runOwner starts a firmware-only VM in dir, prints QEMU's pid and waits to be killed.
func runOwner(dir string) {
	cfg := hypervisor.Config{ID: "owned", StateDir: dir, Accel: hypervisor.AccelTCG}
	v, err := New(cfg)
	if err == nil {
		err = v.Start(context.Background())
	}
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("pid " + strconv.Itoa(v.PID()) + "\n")
	select {}
}

func TestIntegrationOwnerKilled(t *testing.T) {
	requireQEMU(t)
	root := stateRoot(t)
	dir := filepath.Join(root, "owned")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ownerEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("owner said %q", line)
	}
	if removed, _ := statedir.Sweep(root); len(removed) != 0 {
		t.Fatalf("Sweep removed %v while its owner lives", removed)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	// QEMU dies with its owner (parent-death signal) ...
	deadline := time.Now().Add(2 * time.Second)
	for processExists(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if processExists(pid) {
		t.Errorf("QEMU %d outlived its SIGKILLed owner", pid)
	}
	// ... and Sweep removes what the owner left.
	removed, err := statedir.Sweep(root)
	if err != nil || len(removed) != 1 || removed[0] != dir {
		t.Fatalf("Sweep = %v, %v; want [%s]", removed, err, dir)
	}
	requireGone(t, []int{pid}, dir)
}
