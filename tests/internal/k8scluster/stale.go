package k8scluster

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// cleanStale undoes what a cluster whose test binary died (a `go test -timeout`, a kill -9)
// left: its state.json is still there although we hold the lock. Its components died with
// the test binary (Pdeathsig) or are killed here; pods that still run (their shims outlive
// containerd, and the Veil shim's VM with it) are removed through a containerd started again
// on the old root, so that each shim stops its VM; then the host changes are undone.
func cleanStale(bins map[string]string, binDir string) {
	data, err := os.ReadFile(statePath())
	if err != nil {
		return
	}
	var h hostState
	if json.Unmarshal(data, &h) == nil && h.Dir != "" {
		fmt.Fprintf(os.Stderr, "k8scluster: cleaning up after a cluster that did not stop (%s)\n", h.Dir)
		for i := len(h.Procs) - 1; i >= 0; i-- {
			p := h.Procs[i]
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid)); err == nil && exe == p.Exe {
				_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
			}
		}
		if len(h.shims()) > 0 {
			h.removePods(bins, binDir)
		}
		h.teardown(false)
	}
	_ = os.Remove(statePath())
}

// removePods starts a containerd on the stale root (it reconnects to the running shims),
// stops and removes every pod with crictl, and stops that containerd.
func (h *hostState) removePods(bins map[string]string, binDir string) {
	cfg := filepath.Join(filepath.Dir(h.Socket), "containerd.toml")
	if _, err := os.Stat(cfg); err != nil {
		return
	}
	logf, err := os.Create(filepath.Join(h.Dir, "logs", "containerd-cleanup.log"))
	if err != nil {
		return
	}
	defer logf.Close()
	cmd := exec.Command(bins["containerd"], "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+filepath.Join(binDir, "tools")+":"+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cmd.Start() != nil {
		return
	}
	ep := "unix://" + h.Socket
	crictl := func(args ...string) (string, error) {
		out, err := exec.Command(bins["crictl"], append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep,
			"--timeout", "1m"}, args...)...).Output()
		return string(out), err
	}
	if containerdenv.WaitFor(30*time.Second, 200*time.Millisecond, func() bool { _, err := crictl("version"); return err == nil }) {
		containerdenv.RemovePods(crictl)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// shims lists the pids of the containerd shims (runc's and Veil's) that serve the cluster's
// containerd: they run in process groups of their own and outlive a killed containerd.
func (h *hostState) shims() []int {
	if h.Socket == "" {
		return nil
	}
	var pids []int
	for pid := range parents() {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.Contains(string(data), "containerd-shim") && strings.Contains(string(data), h.Socket) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killShims kills the shims still left and everything they started (QEMU, virtiofsd,
// containers' processes), children first.
func (h *hostState) killShims() {
	ppids := parents()
	for _, shim := range h.shims() {
		var tree []int
		for pid := range ppids {
			for p := pid; p > 1; p = ppids[p] {
				if p == shim {
					tree = append(tree, pid)
					break
				}
			}
		}
		for _, pid := range tree {
			if pid != shim {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = syscall.Kill(shim, syscall.SIGKILL)
	}
}

// parents maps every process to its parent.
func parents() map[int]int {
	m := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(fields) > 1 {
			var ppid int
			if _, err := fmt.Sscan(fields[1], &ppid); err == nil {
				m[pid] = ppid
			}
		}
	}
	return m
}
