package containerdenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/veil-runtime/veil/snapshotter/snapconfig"
)

// SnapshotterName is the proxy snapshotter's name in the suites' containerd configurations
// (the runtime handlers' snapshotter = 'veil').
const SnapshotterName = snapconfig.Name

// Snapshotter is a veil-snapshotter process started for a suite.
type Snapshotter struct {
	Root, Socket, LogPath string
	Cmd                   *exec.Cmd
}

// StartSnapshotter starts binDir/veil-snapshotter with its root, socket and log under dir and
// waits until it accepts connections.
func StartSnapshotter(binDir, dir string) (*Snapshotter, error) {
	bin := filepath.Join(binDir, "veil-snapshotter")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s missing: run make build: %w", bin, err)
	}
	s := &Snapshotter{Root: filepath.Join(dir, "veil-snapshotter"), Socket: filepath.Join(dir, "veil-snapshotter.sock"),
		LogPath: filepath.Join(dir, "veil-snapshotter.log")}
	logf, err := os.Create(s.LogPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.Cmd = exec.Command(bin, "-root", s.Root, "-address", s.Socket, "-log-level", "debug")
	s.Cmd.Stdout, s.Cmd.Stderr = logf, logf
	s.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start veil-snapshotter: %w", err)
	}
	if !WaitFor(10*time.Second, 50*time.Millisecond, func() bool {
		c, err := net.Dial("unix", s.Socket)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}) {
		s.Stop()
		return nil, fmt.Errorf("veil-snapshotter did not serve on %s:\n%s", s.Socket, Tail(s.LogPath, 20))
	}
	return s, nil
}

// ProxyPlugin is the containerd.toml fragment that makes it the snapshotter SnapshotterName
// next to overlayfs (snapconfig.ContainerdConfig).
func (s *Snapshotter) ProxyPlugin() string {
	return snapconfig.ContainerdConfig(s.Socket, "overlayfs")
}

// Stop sends SIGTERM and waits up to 10 s, then kills it.
func (s *Snapshotter) Stop() {
	if s == nil || s.Cmd == nil || s.Cmd.Process == nil {
		return
	}
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.Cmd.Process.Kill()
		<-done
	}
	s.Cmd = nil
}
