//go:build e2e

package shim

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// containerdEnv is a containerd started for the tests in a temporary root.
type containerdEnv struct {
	dir, socket, logPath string
	ctrBin               string
	image                string // the busybox image's reference
	cmd                  *exec.Cmd
}

// startContainerd writes a containerd config (CRI off, the Veil runtime's config in
// VEIL_CONFIG), starts containerd and imports the busybox image.
func startContainerd() (*containerdEnv, error) {
	containerd, err := toolPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not found (run scripts/containerd.sh): %w", err)
	}
	ctrBin, err := toolPath("ctr")
	if err != nil {
		return nil, fmt.Errorf("ctr not found (run scripts/containerd.sh): %w", err)
	}
	return startContainerdWith(containerd, ctrBin, 3)
}

// startContainerdWith starts the containerd binary with a config of configVersion (3 for
// containerd 2.x, 2 for 1.x), driven by ctrBin.
func startContainerdWith(containerd, ctrBin string, configVersion int) (*containerdEnv, error) {
	if _, err := os.Stat(filepath.Join(binDir, "containerd-shim-veil-v2")); err != nil {
		return nil, fmt.Errorf("%s/containerd-shim-veil-v2 missing: build it first: %w", binDir, err)
	}
	dir, err := os.MkdirTemp("", "veil-shim-")
	if err != nil {
		return nil, err
	}
	e := &containerdEnv{dir: dir, socket: filepath.Join(dir, "containerd.sock"),
		logPath: filepath.Join(dir, "containerd.log"), ctrBin: ctrBin}
	if err := e.writeConfigs(configVersion); err != nil {
		return nil, err
	}
	logf, err := os.Create(e.logPath)
	if err != nil {
		return nil, err
	}
	e.cmd = exec.Command(containerd, "--config", filepath.Join(dir, "containerd.toml"), "--log-level", "debug")
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.Env = append(os.Environ(),
		"PATH="+binDir+":"+filepath.Join(binDir, "tools")+":"+os.Getenv("PATH"),
		"VEIL_CONFIG="+filepath.Join(dir, "veil.toml"))
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	if !waitFor(30*time.Second, func() bool {
		c, err := net.Dial("unix", e.socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		e.stop()
		return nil, fmt.Errorf("containerd did not come up:\n%s", tail(e.logPath, 30))
	}
	if err := e.importImage(); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

func (e *containerdEnv) writeConfigs(version int) error {
	disabled := `"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"`
	opt := ""
	if version < 3 { // containerd 1.x
		disabled = `"io.containerd.grpc.v1.cri"`
		opt = fmt.Sprintf("[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", filepath.Join(e.dir, "opt"))
	}
	cfg := fmt.Sprintf(`version = %d
root = %q
state = %q
disabled_plugins = [%s]
[grpc]
  address = %q
%s`, version, filepath.Join(e.dir, "root"), filepath.Join(e.dir, "state"), disabled, e.socket, opt)
	if err := os.WriteFile(filepath.Join(e.dir, "containerd.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	veil := fmt.Sprintf("[hypervisor]\nimage = %q\nmemory_mib = 512\nvcpus = 1\naccel = \"auto\"\nboot_timeout = \"120s\"\n", imageDir)
	return os.WriteFile(filepath.Join(e.dir, "veil.toml"), []byte(veil), 0o644)
}

// importImage builds the busybox image and imports it.
func (e *containerdEnv) importImage() error {
	e.image = "veil.test/busybox:latest"
	tarPath := filepath.Join(e.dir, "busybox.tar")
	if err := buildBusyboxImage(tarPath, e.image); err != nil {
		return fmt.Errorf("build busybox image: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := e.ctrCmd(ctx, "images", "import", "--platform", "linux/amd64", tarPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import: %w\n%s", err, out)
	}
	return nil
}

func (e *containerdEnv) ctrCmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, e.ctrBin, append([]string{"--address", e.socket}, args...)...)
}

// stop removes every leftover container, stops containerd and removes its root.
func (e *containerdEnv) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := e.ctrCmd(ctx, "task", "ls", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = e.ctrCmd(ctx, "task", "kill", "-s", "SIGKILL", id).Run()
			time.Sleep(200 * time.Millisecond)
			_ = e.ctrCmd(ctx, "task", "delete", "-f", id).Run()
		}
	}
	if out, err := e.ctrCmd(ctx, "containers", "ls", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = e.ctrCmd(ctx, "containers", "delete", id).Run()
		}
	}
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = e.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = e.cmd.Process.Kill()
		}
	}
	// containerd leaves snapshot mounts behind when killed: unmount before removing.
	_ = exec.Command("sh", "-c", "grep -o ' "+e.dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	if os.Getenv("VEIL_TEST_KEEP") != "" {
		fmt.Fprintf(os.Stderr, "tests/shim: VEIL_TEST_KEEP: kept %s\n", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}
