//go:build e2e

// Package e2e boots real QEMU VMs from the guest image that `make image` builds and drives the
// agent inside them, through the Go API and through the veil-ctl binary. Run with `make e2e`
// (or `make test`), which builds the image and sets VEIL_IMAGE and VEIL_BIN.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/guest-image/manifest"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/shim/ctl"
	"github.com/veil-runtime/veil/shim/sandbox"
)

var (
	imageDir string // VEIL_IMAGE
	binDir   string // VEIL_BIN
	rootfs   string // a busybox root filesystem shared by every test
)

func TestMain(m *testing.M) {
	imageDir, binDir = os.Getenv("VEIL_IMAGE"), os.Getenv("VEIL_BIN")
	if imageDir == "" || binDir == "" {
		fmt.Fprintln(os.Stderr, "e2e: VEIL_IMAGE and VEIL_BIN are not set: run `make e2e` (it builds the guest image and the binaries)")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "veil-e2e-rootfs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rootfs = filepath.Join(dir, "rootfs")
	if err := busyboxRootFS(rootfs); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	removeHostileImage()
	os.Exit(code)
}

// busyboxRootFS makes a root filesystem from Debian's busybox-static: the binary, a link per
// applet, and the few files and directories a container expects.
func busyboxRootFS(dir string) error {
	const bb = "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		return fmt.Errorf("%s missing: apt-get install busybox-static", bb)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// boot starts a VM with the busybox root filesystem shared under the tag "rootfs" and stops it
// when the test ends.
func boot(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id := fmt.Sprintf("e2e-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	sb, err := sandbox.Boot(ctx, sandbox.Options{
		ID: id, ImageDir: imageDir,
		SharedDirs: []hypervisor.SharedDir{{Tag: "rootfs", HostPath: rootfs}},
	})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console of %s:\n%s", id, sandbox.ConsoleTail(sb.VM.ConsoleLog(), 60))
		}
		if err := sb.Close(context.Background()); err != nil {
			t.Errorf("close sandbox: %v", err)
		}
	})
	if _, err := sb.Agent.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: id, Hostname: "e2e"}); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	return sb
}

// containerOpts tune newContainer.
type containerOpts struct {
	stdin    bool
	terminal bool
	memLimit int64
}

// newContainer creates (but does not start) a container running args on the shared rootfs.
func newContainer(t *testing.T, sb *sandbox.Sandbox, id string, args []string, o containerOpts) {
	t.Helper()
	mnt := api.StorageDir + "/" + id + "/rootfs"
	spec, err := ctl.Spec(ctl.SpecOptions{Args: args, RootPath: mnt, Terminal: o.terminal, MemoryLimitBytes: o.memLimit})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sb.Agent.CreateContainer(context.Background(), &api.CreateContainerRequest{
		ContainerId: id, OciSpec: spec, Stdin: o.stdin,
		Storages: []*api.Storage{{Driver: "virtiofs", Source: "rootfs", MountPoint: mnt}},
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", id, err)
	}
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// kernelFlag is veil-image's --kernel for the images the tests build themselves (sim and
// hostile images): the kernel of the image under test (VEIL_IMAGE), so that a run against
// a veil-kernel image (make image-veil) boots the veil kernel throughout.
func kernelFlag() string {
	m, err := manifest.Read(imageDir)
	if err != nil || m.KernelKind == "" {
		return "--kernel=debian"
	}
	return "--kernel=" + m.KernelKind
}
