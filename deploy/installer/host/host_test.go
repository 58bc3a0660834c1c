package host_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veil-runtime/veil/deploy/installer/host"
	"github.com/veil-runtime/veil/deploy/installer/internal/fakehost"
)

func TestProcesses(t *testing.T) {
	h, _ := fakehost.New(t, fakehost.Options{Shims: 2, Init: "systemd"})
	fakehost.WriteFile(t, h, "/proc/77/cmdline", "/usr/bin/containerd-shim-runc-v2\x00-id\x00x\x00")
	fakehost.WriteFile(t, h, "/proc/self/cmdline", "nope\x00")
	fakehost.WriteFile(t, h, "/proc/88/cmdline", "") // a kernel thread
	pids, err := h.VeilShims()
	if err != nil || len(pids) != 2 || pids[0] != 1000 || pids[1] != 1001 {
		t.Errorf("VeilShims = %v, %v", pids, err)
	}
	if n := h.InitName(); n != "systemd" {
		t.Errorf("InitName = %q", n)
	}
	if _, err := host.New(t.TempDir()).VeilShims(); err == nil {
		t.Error("a host root without /proc: no error")
	}
}

// The real /proc: this test process is found by its executable's name.
func TestProcessesOfThisHost(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ps, err := host.New("/").Named(filepath.Base(exe))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.PID == os.Getpid() {
			return
		}
	}
	t.Errorf("pid %d (%s) not among %v", os.Getpid(), exe, ps)
}

func TestParseRestart(t *testing.T) {
	sysd, _ := fakehost.New(t, fakehost.Options{Init: "systemd"})
	other, _ := fakehost.New(t, fakehost.Options{Init: "tini"})
	for _, tc := range []struct {
		spec string
		h    host.Host
		want string
	}{
		{"", sysd, "systemd (systemctl restart containerd)"},
		{"auto", other, "none (the host's pid 1 is tini, not systemd"},
		{"systemd:k3s", other, "systemd (systemctl restart k3s)"},
		{"signal:/run/containerd.pid", sysd, "signal terminated to the pid in /run/containerd.pid"},
		{"signal:/run/c.pid:HUP", sysd, "signal hangup"},
		{"command:supervisorctl restart containerd", sysd, `command "supervisorctl restart containerd"`},
		{"none", sysd, "none (--restart none"},
	} {
		r, err := host.ParseRestart(tc.spec, tc.h)
		if err != nil || !strings.HasPrefix(r.String(), tc.want) {
			t.Errorf("ParseRestart(%q) = %v, %v; want %q", tc.spec, r, err, tc.want)
		}
	}
	for _, bad := range []string{"reboot", "signal:relative.pid", "signal:/p:NOPE", "command:  "} {
		if _, err := host.ParseRestart(bad, sysd); err == nil {
			t.Errorf("ParseRestart(%q) accepted", bad)
		}
	}
}

func TestSignalRestart(t *testing.T) {
	h, _ := fakehost.New(t, fakehost.Options{})
	fakehost.WriteFile(t, h, "/run/containerd/containerd.pid", "4242\n")
	var got []any
	s := host.Signal{Host: h, PIDFile: "/run/containerd/containerd.pid", Sig: syscall.SIGTERM,
		Kill: func(pid int, sig syscall.Signal) error { got = append(got, pid, sig); return nil }}
	if err := s.Restart(context.Background()); err != nil || len(got) != 2 || got[0] != 4242 || got[1] != syscall.SIGTERM {
		t.Errorf("Restart: %v, kill %v", err, got)
	}
	s.PIDFile = "/run/missing.pid"
	if err := s.Restart(context.Background()); err == nil || !strings.Contains(err.Error(), "/run/missing.pid") {
		t.Errorf("missing pid file: %v", err)
	}
}

func TestSystemdRestart(t *testing.T) {
	h, _ := fakehost.New(t, fakehost.Options{})
	var calls [][]string
	h.Exec = func(cmd *exec.Cmd) ([]byte, error) {
		calls = append(calls, cmd.Args)
		if cmd.SysProcAttr != nil && cmd.SysProcAttr.Chroot != h.Root {
			t.Errorf("chroot %q, want %q", cmd.SysProcAttr.Chroot, h.Root)
		}
		return nil, errors.New("exit status 1")
	}
	err := host.Systemd{Host: h, Unit: "containerd"}.Restart(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no systemd D-Bus socket "+h.Root+"/run/systemd/private") {
		t.Errorf("a host without systemd's socket: %v", err)
	}
	if _, lerr := exec.LookPath("nsenter"); lerr != nil {
		if len(calls) != 0 || !strings.Contains(err.Error(), "no nsenter") {
			t.Errorf("ran %v; err %v", calls, err)
		}
		return
	}
	if len(calls) != 1 {
		t.Fatalf("ran %v", calls)
	}
	args := strings.Join(calls[0], " ")
	if !strings.HasSuffix(args, "nsenter --mount="+h.Root+"/proc/1/ns/mnt -- systemctl restart containerd") {
		t.Errorf("ran %q", args)
	}
}

func TestCommandRestart(t *testing.T) {
	out := filepath.Join(t.TempDir(), "restarted")
	c := host.Command{Host: host.New("/"), Shell: `echo "$0" > ` + out}
	if err := c.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != "/bin/sh" {
		t.Errorf("the command wrote %q", b)
	}
	c.Shell = "echo broken >&2; exit 3"
	if err := c.Restart(context.Background()); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("a failing command: %v", err)
	}
	// Under a host root, the host's /bin/sh runs chrooted there.
	h, _ := fakehost.New(t, fakehost.Options{})
	var args []string
	h.Exec = func(cmd *exec.Cmd) ([]byte, error) {
		args = cmd.Args
		if cmd.SysProcAttr == nil || cmd.SysProcAttr.Chroot != h.Root {
			t.Errorf("not chrooted into %s", h.Root)
		}
		return nil, nil
	}
	if err := (host.Command{Host: h, Shell: "kill -HUP 1"}).Restart(context.Background()); err != nil ||
		strings.Join(args, " ") != "/bin/sh -c kill -HUP 1" {
		t.Errorf("ran %q: %v", args, err)
	}
}

func TestWaitSocket(t *testing.T) {
	h := host.New(t.TempDir())
	sock := "/run/containerd/containerd.sock"
	os.MkdirAll(filepath.Dir(h.Path(sock)), 0o755)
	if err := h.WaitSocket(context.Background(), sock, 300*time.Millisecond); err == nil {
		t.Error("no socket: no error")
	}
	listener := make(chan net.Listener, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("unix", h.Path(sock))
		if err != nil {
			t.Error(err)
		}
		listener <- l
	}()
	if err := h.WaitSocket(context.Background(), sock, 5*time.Second); err != nil {
		t.Error(err)
	}
	if l := <-listener; l != nil {
		l.Close()
	}
}
