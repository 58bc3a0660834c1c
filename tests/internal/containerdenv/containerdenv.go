// Package containerdenv is the containerd harness of the VM test suites (tests/shim, tests/cri
// and tests/critest): it starts a containerd of their own in a temporary root, on its own
// socket, with the Veil shim on its PATH, writes the configurations they share (Veil's
// veil.toml, containerd.toml for the CRI plugin with the veil and runc handlers, a CNI bridge
// network) and stops containerd and removes its root afterwards. It also has the small helpers
// the suites share: their TestMain (Main), tool lookup in VEIL_BIN, polling, and a log's last
// lines.
//
// It is test support: only packages under tests/ can import it.
package containerdenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ShimBinary is the Veil shim's binary name, in the suites' VEIL_BIN.
const ShimBinary = "containerd-shim-veil-v2"

// Containerd is a containerd (to be) started in a temporary root: its configuration, state,
// socket and log are all under Dir.
type Containerd struct {
	Dir     string    // the temporary root
	Socket  string    // Dir/containerd.sock, containerd's gRPC address
	LogPath string    // Dir/containerd.log, containerd's stdout and stderr
	Cmd     *exec.Cmd // the running containerd; nil until Start succeeds

	// KillGroup makes Terminate kill containerd's whole process group, not containerd alone,
	// when it does not exit on SIGTERM.
	KillGroup bool
}

// New makes a temporary root (os.MkdirTemp's pattern) for a containerd.
func New(pattern string) (*Containerd, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return nil, err
	}
	return At(dir), nil
}

// At is a containerd with its root in dir.
func At(dir string) *Containerd {
	return &Containerd{Dir: dir, Socket: filepath.Join(dir, "containerd.sock"),
		LogPath: filepath.Join(dir, "containerd.log")}
}

// LogFile is LogPath.
func (c *Containerd) LogFile() string { return c.LogPath }

// Path is the path of name in the root.
func (c *Containerd) Path(name string) string { return filepath.Join(c.Dir, name) }

// ConfigPath is containerd's configuration file, Dir/containerd.toml.
func (c *Containerd) ConfigPath() string { return c.Path("containerd.toml") }

// WriteConfig writes containerd's configuration file.
func (c *Containerd) WriteConfig(cfg string) error {
	return os.WriteFile(c.ConfigPath(), []byte(cfg), 0o644)
}

// Start starts the containerd binary with `--config Dir/containerd.toml` and args, its output
// in LogPath, in a process group of its own, with binDir and binDir/tools (where the Veil shim
// and containerd's runc shim are) first on its PATH and env added to its environment. It does
// not wait for containerd to serve.
func (c *Containerd) Start(containerd, binDir string, args []string, env ...string) error {
	logf, err := os.Create(c.LogPath)
	if err != nil {
		return err
	}
	defer logf.Close() // containerd has its own copy
	cmd := exec.Command(containerd, append([]string{"--config", c.ConfigPath()}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+filepath.Join(binDir, "tools")+":"+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	c.Cmd = cmd
	return nil
}

// Terminate sends containerd SIGTERM and waits up to 20 s for it to exit, then kills it (its
// process group with KillGroup). It does nothing when containerd was not started.
func (c *Containerd) Terminate() {
	if c.Cmd == nil || c.Cmd.Process == nil {
		return
	}
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.Cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		if c.KillGroup {
			_ = syscall.Kill(-c.Cmd.Process.Pid, syscall.SIGKILL)
		} else {
			_ = c.Cmd.Process.Kill()
		}
	}
}

// RemoveRoot unmounts what is left mounted under the root (containerd leaves snapshot mounts
// behind when killed) and removes the root, unless keep.
func (c *Containerd) RemoveRoot(keep bool) {
	if c.Dir == "" {
		return
	}
	_ = exec.Command("sh", "-c", "grep -o ' "+c.Dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	if keep {
		return
	}
	_ = os.RemoveAll(c.Dir)
}

// KeepRoot reports whether VEIL_TEST_KEEP asks to keep the temporary roots, and says so on
// stderr (prefixed with suite) with the root's path when it does.
func (c *Containerd) KeepRoot(suite string) bool {
	if os.Getenv("VEIL_TEST_KEEP") == "" {
		return false
	}
	fmt.Fprintf(os.Stderr, "%s: VEIL_TEST_KEEP: kept %s\n", suite, c.Dir)
	return true
}

// RequireShim fails unless binDir has the Veil shim.
func RequireShim(binDir string) error {
	if _, err := os.Stat(filepath.Join(binDir, ShimBinary)); err != nil {
		return fmt.Errorf("%s/%s missing: build it first: %w", binDir, ShimBinary, err)
	}
	return nil
}

// VeilConfig is the Veil shim's configuration (veil.toml) of the suites: the guest image in
// imageDir, 512 MiB and one vCPU per VM, KVM when there is one, two minutes to boot.
func VeilConfig(imageDir string) string {
	return fmt.Sprintf("[hypervisor]\nimage = %q\nmemory_mib = 512\nvcpus = 1\naccel = \"auto\"\nboot_timeout = \"120s\"\n", imageDir)
}

// WriteVeilConfig writes VeilConfig(imageDir) to path.
func WriteVeilConfig(path, imageDir string) error {
	return os.WriteFile(path, []byte(VeilConfig(imageDir)), 0o644)
}

// ToolPath finds the tool name in binDir/tools (scripts/containerd.sh and scripts/cri-tools.sh
// put containerd, ctr and crictl there), then binDir, then PATH.
func ToolPath(binDir, name string) (string, error) {
	for _, dir := range []string{filepath.Join(binDir, "tools"), binDir} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// WaitFor polls cond every interval until it holds or d passed, and reports whether it held.
func WaitFor(d, interval time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(interval) {
		if cond() {
			return true
		}
	}
	return cond()
}

// Tail is the last n lines of the file at path (the error's text when it cannot be read).
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
