// Package host is the installer's view of the node it runs on: the host's root file system
// mounted at Root (/host in the DaemonSet, / when veil-deploy runs on the host itself), the
// host's programs run under that root, and the host's processes read from Root/proc.
//
// Every path this package takes is a host path ("/etc/containerd/config.toml"); Path maps it
// to where the installer sees it (Root + path).
package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// SearchPath is the PATH of the host's services (systemd's default): where containerd, and
// the shim it starts, find qemu-system-x86_64 and the other programs.
var SearchPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// ShimName is the program name of Veil's containerd shim.
const ShimName = "containerd-shim-veil-v2"

// Host is the node seen from the installer.
type Host struct {
	// Root is where the host's / is mounted ("/" for the host itself).
	Root string
	// Exec runs a command built by Command and returns its standard output. Nil: the
	// command runs (tests replace it).
	Exec func(cmd *exec.Cmd) ([]byte, error)
}

// New returns the host whose root is mounted at root.
func New(root string) Host {
	if root == "" {
		root = "/"
	}
	return Host{Root: filepath.Clean(root)}
}

// Path is where the installer sees the host path p.
func (h Host) Path(p string) string {
	if h.Root == "/" || h.Root == "" {
		return filepath.Clean(p)
	}
	return filepath.Join(h.Root, p)
}

// Exists reports whether the host path p exists (links followed).
func (h Host) Exists(p string) bool {
	_, err := os.Stat(h.Path(p))
	return err == nil
}

// ReadTrim reads the host file p and trims white space; "" when it cannot be read.
func (h Host) ReadTrim(p string) string {
	b, err := os.ReadFile(h.Path(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Find returns the first of the host paths that is a regular file with an execute bit, or "".
func (h Host) Find(paths ...string) string {
	for _, p := range paths {
		if fi, err := os.Stat(h.Path(p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// LookPath finds the program name in the host's SearchPath, or "".
func (h Host) LookPath(name string) string {
	var paths []string
	for _, d := range SearchPath {
		paths = append(paths, filepath.Join(d, name))
	}
	return h.Find(paths...)
}

// Command builds a command that runs the host's program path (a host path) with the host's
// root as its root (chroot when Root is not /), the host's libraries and a service's PATH.
func (h Host) Command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{"PATH=" + strings.Join(SearchPath, ":"), "LC_ALL=C"}
	if h.Root != "/" && h.Root != "" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: h.Root}
		cmd.Dir = "/"
	}
	return cmd
}

// Output runs the host's program path and returns its standard output. The error carries
// the end of its standard error.
func (h Host) Output(ctx context.Context, path string, args ...string) ([]byte, error) {
	cmd := h.Command(ctx, path, args...)
	return h.run(cmd)
}

func (h Host) run(cmd *exec.Cmd) ([]byte, error) {
	if h.Exec != nil {
		return h.Exec(cmd)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 400 {
			msg = "..." + msg[len(msg)-400:]
		}
		return out, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, msg)
	}
	return out, nil
}

// Process is a process of the host.
type Process struct {
	PID  int
	Argv []string
	Exe  string // the host path of its executable ("" when unreadable)
}

// Processes lists the host's processes from Root/proc; a process that ends while it is read
// is skipped.
func (h Host) Processes() ([]Process, error) {
	dir := h.Path("/proc")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", dir, err)
	}
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue // ended, or a kernel thread
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		exe, _ := os.Readlink(filepath.Join(dir, e.Name(), "exe"))
		out = append(out, Process{PID: pid, Argv: argv, Exe: strings.TrimSuffix(exe, " (deleted)")})
	}
	return out, nil
}

// Named returns the processes whose program (argv[0] or executable) has base name name.
func (h Host) Named(name string) ([]Process, error) {
	all, err := h.Processes()
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, p := range all {
		if filepath.Base(p.Argv[0]) == name || (p.Exe != "" && filepath.Base(p.Exe) == name) {
			out = append(out, p)
		}
	}
	return out, nil
}

// VeilShims returns the pids of the running Veil shims: one per Veil pod (or plain
// `ctr run`) on the node.
func (h Host) VeilShims() ([]int, error) {
	ps, err := h.Named(ShimName)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range ps {
		pids = append(pids, p.PID)
	}
	return pids, nil
}

// InitName is the name of the host's pid 1 ("systemd", "init", ...), "" when unreadable.
func (h Host) InitName() string {
	if n := h.ReadTrim("/proc/1/comm"); n != "" {
		return n
	}
	exe, err := os.Readlink(h.Path("/proc/1/exe"))
	if err != nil {
		return ""
	}
	return filepath.Base(exe)
}

// ErrNotFound says a host program is missing.
var ErrNotFound = errors.New("not found on the host")
