package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// Restarter restarts the host's containerd so that it reads its configuration again.
type Restarter interface {
	Restart(ctx context.Context) error
	String() string
}

// Systemd restarts a systemd unit (containerd) of the host: through systemd's private D-Bus
// socket (<root>/run/systemd/private, the way systemctl talks to it), else with
// `nsenter --mount=<root>/proc/1/ns/mnt -- systemctl restart <unit>` when the installer's
// image has nsenter (util-linux).
type Systemd struct {
	Host Host
	Unit string
}

// Restart restarts the unit and waits for systemd's job to finish.
func (s Systemd) Restart(ctx context.Context) error {
	var errs []error
	sock := s.Host.Path("/run/systemd/private")
	if _, err := os.Stat(sock); err == nil {
		err := restartDBus(ctx, sock, s.Unit)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	} else {
		errs = append(errs, fmt.Errorf("no systemd D-Bus socket %s", sock))
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		errs = append(errs, errors.New("no nsenter in the installer's image"))
		return fmt.Errorf("restart %s through systemd: %w", s.Unit, errors.Join(errs...))
	}
	cmd := exec.CommandContext(ctx, nsenter, "--mount="+s.Host.Path("/proc/1/ns/mnt"), "--",
		"systemctl", "restart", s.Unit)
	cmd.Env = []string{"PATH=" + strings.Join(SearchPath, ":"), "LC_ALL=C"}
	if _, err := s.Host.run(cmd); err != nil {
		errs = append(errs, err)
		return fmt.Errorf("restart %s through systemd: %w", s.Unit, errors.Join(errs...))
	}
	return nil
}

// restartDBus asks systemd (its private socket: no bus daemon, EXTERNAL authentication as
// root) to restart unit, and waits for the job's result.
func restartDBus(ctx context.Context, sock, unit string) error {
	conn, err := sdbus.NewConnection(func() (*godbus.Conn, error) {
		c, err := godbus.Dial("unix:path="+sock, godbus.WithContext(ctx))
		if err != nil {
			return nil, err
		}
		if err := c.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
	if err != nil {
		return fmt.Errorf("systemd D-Bus %s: %w", sock, err)
	}
	defer conn.Close()
	if !strings.Contains(unit, ".") {
		unit += ".service"
	}
	done := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, unit, "replace", done); err != nil {
		return fmt.Errorf("systemd D-Bus: restart %s: %w", unit, err)
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("systemd D-Bus: restart %s: job %s (journalctl -u %s says why)", unit, res, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("systemd D-Bus: restart %s: %w", unit, ctx.Err())
	}
}

func (s Systemd) String() string { return "systemd (systemctl restart " + s.Unit + ")" }

// Signal sends a signal to the process whose pid a host file holds (a supervisor is expected
// to start containerd again, or containerd reloads on it). The pid is the host's: the
// installer needs the host's pid namespace (hostPID).
type Signal struct {
	Host    Host
	PIDFile string // host path
	Sig     syscall.Signal
	// Kill sends the signal (nil: syscall.Kill; tests replace it).
	Kill func(pid int, sig syscall.Signal) error
}

// Restart signals the process.
func (s Signal) Restart(ctx context.Context) error {
	raw := s.Host.ReadTrim(s.PIDFile)
	pid, err := strconv.Atoi(raw)
	if err != nil || pid <= 1 {
		return fmt.Errorf("restart containerd: pid file %s holds %q, not a pid", s.PIDFile, raw)
	}
	kill := s.Kill
	if kill == nil {
		kill = syscall.Kill
	}
	if err := kill(pid, s.Sig); err != nil {
		return fmt.Errorf("restart containerd: signal %v to pid %d (from %s): %w", s.Sig, pid, s.PIDFile, err)
	}
	return nil
}

func (s Signal) String() string { return fmt.Sprintf("signal %v to the pid in %s", s.Sig, s.PIDFile) }

// Command runs a shell command with the host's /bin/sh, chrooted into the host root (so
// the host's programs and files are at their usual paths; the pid namespace is the host's
// with hostPID).
type Command struct {
	Host  Host
	Shell string
}

// Restart runs the command.
func (c Command) Restart(ctx context.Context) error {
	if _, err := c.Host.Output(ctx, "/bin/sh", "-c", c.Shell); err != nil {
		return fmt.Errorf("restart containerd with the configured command: %w", err)
	}
	return nil
}

func (c Command) String() string { return "command " + strconv.Quote(c.Shell) }

// None restarts nothing: the user restarts containerd. Why says why (logged).
type None struct{ Why string }

// Restart does nothing.
func (None) Restart(context.Context) error { return nil }

func (n None) String() string { return "none (" + n.Why + ")" }

var signals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
}

// ParseRestart reads the --restart flag:
//
//	auto (or "")            systemd when the host's pid 1 is systemd, else none
//	systemd[:UNIT]          systemctl restart UNIT (default containerd) in the host's mount namespace
//	signal:PIDFILE[:SIG]    send SIG (default TERM) to the pid in the host file PIDFILE
//	command:SHELL           run SHELL with the host's /bin/sh -c, chrooted into the host root
//	none                    restart nothing; the user restarts containerd
func ParseRestart(spec string, h Host) (Restarter, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "", "auto":
		if n := h.InitName(); n != "systemd" {
			if n == "" {
				n = "unreadable"
			}
			return None{Why: fmt.Sprintf("the host's pid 1 is %s, not systemd: restart containerd yourself, "+
				"or set --restart signal:PIDFILE or command:...", n)}, nil
		}
		return Systemd{Host: h, Unit: "containerd"}, nil
	case "systemd":
		if arg == "" {
			arg = "containerd"
		}
		return Systemd{Host: h, Unit: arg}, nil
	case "signal":
		file, name, _ := strings.Cut(arg, ":")
		if !strings.HasPrefix(file, "/") {
			return nil, fmt.Errorf("--restart %q: want signal:/ABSOLUTE/PIDFILE[:SIGNAL]", spec)
		}
		sig := syscall.SIGTERM
		if name != "" {
			s, ok := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
			if !ok {
				return nil, fmt.Errorf("--restart %q: unknown signal %q (want TERM, HUP, INT, QUIT, KILL, USR1 or USR2)", spec, name)
			}
			sig = s
		}
		return Signal{Host: h, PIDFile: file, Sig: sig}, nil
	case "command":
		if strings.TrimSpace(arg) == "" {
			return nil, fmt.Errorf("--restart %q: the command is empty", spec)
		}
		return Command{Host: h, Shell: arg}, nil
	case "none":
		return None{Why: "--restart none: restart containerd yourself"}, nil
	}
	return nil, fmt.Errorf("--restart %q: want auto, systemd[:UNIT], signal:PIDFILE[:SIG], command:SHELL or none", spec)
}

// WaitSocket waits until the host's unix socket path (a host path) accepts a connection,
// polling until ctx ends or timeout passes.
func (h Host) WaitSocket(ctx context.Context, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	local := h.Path(path)
	var last error
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", local)
		if err == nil {
			return c.Close()
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd's socket %s did not answer within %s: %w", path, timeout, errors.Join(ctx.Err(), last))
		case <-time.After(250 * time.Millisecond):
		}
	}
}
