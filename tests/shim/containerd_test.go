//go:build e2e

package shim

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/veil-runtime/veil/tests/internal/busyboximage"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// containerdEnv is a containerd started for the tests in a temporary root.
type containerdEnv struct {
	*containerdenv.Containerd
	ctrBin string
	image  string // the busybox image's reference
}

// startContainerd is TestMain's: it keeps VEIL_IMAGE and VEIL_BIN in imageDir and binDir,
// writes a containerd config (CRI off, the Veil runtime's config in VEIL_CONFIG), starts
// containerd and imports the busybox image, and keeps the result in env.
func startContainerd(image, bin string) (containerdenv.Env, error) {
	imageDir, binDir = image, bin
	containerd, err := containerdenv.ToolPath(binDir, "containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not found (run scripts/containerd.sh): %w", err)
	}
	ctrBin, err := containerdenv.ToolPath(binDir, "ctr")
	if err != nil {
		return nil, fmt.Errorf("ctr not found (run scripts/containerd.sh): %w", err)
	}
	if env, err = startContainerdWith(containerd, ctrBin, 3); err != nil {
		return nil, err
	}
	return env, nil
}

// startContainerdWith starts the containerd binary with a config of configVersion (3 for
// containerd 2.x, 2 for 1.x), driven by ctrBin.
func startContainerdWith(containerd, ctrBin string, configVersion int) (*containerdEnv, error) {
	if err := containerdenv.RequireShim(binDir); err != nil {
		return nil, err
	}
	c, err := containerdenv.New("veil-shim-")
	if err != nil {
		return nil, err
	}
	e := &containerdEnv{Containerd: c, ctrBin: ctrBin}
	if err := e.writeConfigs(configVersion); err != nil {
		return nil, err
	}
	if err := e.Start(containerd, binDir, []string{"--log-level", "debug"}, "VEIL_CONFIG="+e.Path("veil.toml")); err != nil {
		return nil, err
	}
	if !waitFor(30*time.Second, func() bool {
		c, err := net.Dial("unix", e.Socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		e.Stop()
		return nil, fmt.Errorf("containerd did not come up:\n%s", containerdenv.Tail(e.LogPath, 30))
	}
	if err := e.importImage(); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *containerdEnv) writeConfigs(version int) error {
	disabled := `"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"`
	opt := ""
	if version < 3 { // containerd 1.x
		disabled = `"io.containerd.grpc.v1.cri"`
		opt = fmt.Sprintf("[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", e.Path("opt"))
	}
	cfg := fmt.Sprintf(`version = %d
root = %q
state = %q
disabled_plugins = [%s]
[grpc]
  address = %q
%s`, version, e.Path("root"), e.Path("state"), disabled, e.Socket, opt)
	if err := e.WriteConfig(cfg); err != nil {
		return err
	}
	return containerdenv.WriteVeilConfig(e.Path("veil.toml"), imageDir)
}

// importImage builds the busybox image and imports it.
func (e *containerdEnv) importImage() error {
	e.image = "veil.test/busybox:latest"
	tarPath := e.Path("busybox.tar")
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

// buildBusyboxImage writes a docker-archive tarball of a one-layer image made from Debian's
// busybox-static (the binary, a link per applet, /etc/passwd and /etc/group) that runs sh.
func buildBusyboxImage(path, ref string) error {
	layer, err := busyboximage.Static()
	if err != nil {
		return err
	}
	img, err := busyboximage.Image(busyboximage.Shell(), layer)
	if err != nil {
		return err
	}
	return busyboximage.WriteTarball(path, ref, img)
}

func (e *containerdEnv) ctrCmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, e.ctrBin, append([]string{"--address", e.Socket}, args...)...)
}

// Stop removes every leftover container, stops containerd and removes its root.
func (e *containerdEnv) Stop() {
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
	e.Terminate()
	e.RemoveRoot(e.KeepRoot("tests/shim"))
}
