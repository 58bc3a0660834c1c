// Package initsys is the guest's PID 1. It mounts the pseudo file systems, enables the cgroup
// controllers, loads the kernel modules that the initrd lists and sets the hostname; then it
// starts the agent proper as its child and reaps every process that ends up parented to it.
// When the agent exits, or on SIGTERM, SIGINT or SIGPWR, it stops every process, syncs,
// unmounts and powers the VM off, after printing the reason on the console.
//
// PID 1 and the agent are two processes because PID 1 must reap orphans with wait4(-1),
// and a wait4(-1) reaper inside the agent would steal the exit statuses that runc's
// libcontainer waits for.
package initsys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/startup"
)

// Config says what Run does. DefaultConfig returns the one of a Veil guest.
type Config struct {
	// Mounts are mounted in order at boot. The failure of one that is not Optional powers
	// the VM off.
	Mounts []Mount
	// ModulesList names the file that lists the kernel modules to load (none if missing).
	ModulesList string
	// Hostname is set before the agent starts (CreateSandbox may change it).
	Hostname string
	// AgentPath is the program of the agent child and AgentArgs its argv (argv[0] included).
	AgentPath string
	AgentArgs []string
	// AgentEnv is the agent's whole environment.
	AgentEnv []string
	// StopTimeout is how long processes get between SIGTERM and SIGKILL at power-off.
	StopTimeout time.Duration
	// ExitReasonFile is where the agent may leave one line saying why it failed (see
	// WriteExitReason); init adds it to its power-off line. "" means none.
	ExitReasonFile string
}

// ExitReasonFile is where a failing agent leaves its reason for init: below /run, outside
// /run/veil (which the host can write through CopyFile).
const ExitReasonFile = "/run/veil-agent/exit-reason"

// maxExitReason bounds the reason init prints.
const maxExitReason = 1024

// GuestFlag is the flag with which init starts the agent: the agent then prepares the guest
// (brings lo up, creates /run/veil) and serves on the guest transports.
const GuestFlag = "--guest"

// DefaultConfig returns the configuration of a Veil guest: DefaultMounts, api.ModulesListPath,
// hostname "veil", and the agent at api.AgentPath started with GuestFlag.
func DefaultConfig() Config {
	return Config{
		Mounts:      DefaultMounts(),
		ModulesList: api.ModulesListPath,
		Hostname:    "veil",
		AgentPath:   api.AgentPath,
		AgentArgs:   []string{"veil-agent", GuestFlag},
		AgentEnv:    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"},
		StopTimeout: 5 * time.Second,

		ExitReasonFile: ExitReasonFile,
	}
}

// Run is PID 1. It never returns: it ends by powering off (or, if even that fails, by
// waiting forever for the host to stop the VM).
func Run(ctx context.Context, cfg Config) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, unix.SIGCHLD)

	// The level is info until /proc is mounted and the kernel command line can be read.
	ctx, _ = SetupLogging(ctx, "init", "info")
	err := boot(ctx, cfg)
	if err != nil {
		powerOff(ctx, cfg, nil, fmt.Sprintf("boot failed: %v", err))
	}
	pid, err := startAgent(cfg)
	if err != nil {
		powerOff(ctx, cfg, nil, fmt.Sprintf("cannot start the agent: %v", err))
	}
	log.G(ctx).WithField("pid", pid).Info("agent started")
	r := newReaper(ctx, pid)
	go r.run(sigchld)

	var reason string
	select {
	case ws := <-r.agentExit:
		reason = "agent exited: " + describeStatus(ws) + readExitReason(cfg.ExitReasonFile)
	case sig := <-stop:
		reason = "received " + unix.SignalName(sig.(syscall.Signal))
	}
	powerOff(ctx, cfg, r, reason)
}

// boot prepares the system. Only the failure of a required mount is an error; everything
// else is a warning on the console.
func boot(ctx context.Context, cfg Config) error {
	mountErr := mountAll(ctx, cfg.Mounts, false)
	if err := ensureConsole(); err != nil {
		log.G(ctx).WithError(err).Warn("no console")
	}
	if level, ok := KernelParam(LogLevelParam); ok {
		if err := log.SetLevel(level); err != nil {
			log.G(ctx).WithError(err).Warnf("bad %s on the kernel command line; using info", LogLevelParam)
		}
	}
	if mountErr != nil {
		return mountErr
	}
	for _, m := range cfg.Mounts {
		if m.FSType == "cgroup2" {
			if err := enableControllers(m.Target); err != nil {
				log.G(ctx).WithError(err).Warn("cgroup controllers not all enabled")
			}
		}
	}
	makeDevLinks(ctx)
	// Ctrl-Alt-Del then sends SIGINT to init instead of rebooting at once.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		log.G(ctx).WithError(err).Debug("cannot turn Ctrl-Alt-Del off")
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			log.G(ctx).WithError(err).Warnf("cannot set hostname %q", cfg.Hostname)
		}
	}
	n, err := LoadModules(ctx, cfg.ModulesList)
	if err != nil {
		log.G(ctx).WithError(err).Warnf("loaded %d modules; some failed", n)
	} else {
		log.G(ctx).Infof("loaded %d modules", n)
	}
	return mountAll(ctx, cfg.Mounts, true)
}

// startAgent starts the agent in its own session with the console as stdio.
func startAgent(cfg Config) (int, error) {
	// The agent counts its start from here (agent/startup): the moment of the exec.
	env := append(append([]string{}, cfg.AgentEnv...), startup.EnvValue())
	pid, err := syscall.ForkExec(cfg.AgentPath, cfg.AgentArgs, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", cfg.AgentPath, err)
	}
	return pid, nil
}

// powerOff prints reason on the console, stops every process (reaping them through r when
// the reaper runs), syncs, unmounts and powers off. It never returns.
func powerOff(ctx context.Context, cfg Config, r *reaper, reason string) {
	// Straight to the console, whatever the log level: the host reads this line.
	fmt.Fprintf(os.Stderr, "veil-init: powering off: %s\n", reason)
	if r == nil {
		r = newReaper(ctx, 0)
		sigchld := make(chan os.Signal, 1)
		signal.Notify(sigchld, unix.SIGCHLD)
		go r.run(sigchld)
	}
	stopAll(ctx, r, cfg.StopTimeout)
	unix.Sync()
	unmountAll(ctx)
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(os.Stderr, "veil-init: power off failed: %v; waiting for the host to stop the VM\n", err)
	select {}
}

// stopAll sends SIGTERM to every process but init, waits up to timeout for all of them to be
// reaped, then sends SIGKILL to what is left.
func stopAll(ctx context.Context, r *reaper, timeout time.Duration) {
	if err := unix.Kill(-1, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		log.G(ctx).WithError(err).Warn("cannot send SIGTERM to all processes")
	}
	if r.waitNoChildren(timeout) {
		return
	}
	log.G(ctx).Warnf("processes still running %v after SIGTERM: sending SIGKILL", timeout)
	_ = unix.Kill(-1, unix.SIGKILL)
	if !r.waitNoChildren(2 * time.Second) {
		log.G(ctx).Warn("processes still running after SIGKILL")
	}
}

// WriteExitReason leaves reason (its first line, cut to 1 KiB) in path for init to print
// when the agent has exited.
func WriteExitReason(path, reason string) error {
	line, _, _ := strings.Cut(reason, "\n")
	if len(line) > maxExitReason {
		line = line[:maxExitReason]
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write exit reason: %w", err)
	}
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		return fmt.Errorf("write exit reason: %w", err)
	}
	return nil
}

// readExitReason returns ": <reason>" from the agent's exit reason file, or "".
func readExitReason(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if len(line) > maxExitReason {
		line = line[:maxExitReason]
	}
	if line = strings.TrimSpace(line); line == "" {
		return ""
	}
	return ": " + line
}

func describeStatus(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}
