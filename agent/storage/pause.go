package storage

import (
	"fmt"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// DefaultPauseBinary is the guest's program that runs as the pause bundle's
// api.PauseCommand: the image's /init (veil-init, or the agent where it is /init), which
// acts as the pause process when started under the name "pause" (agent/pause).
const DefaultPauseBinary = "/init"

// pauseTmpfs is the bundle's tmpfs: room for the directories runc makes for the mounts.
const pauseTmpfs = "size=1m,nr_inodes=256,mode=0755"

// mountPause mounts the pause bundle at rootfs: a small tmpfs holding only api.PauseCommand,
// the guest image's pause program bound read-only. The sandbox container so runs code of the
// measured guest image, none of the host's. The spec must run exactly api.PauseCommand on a
// read-only root.
func (t *Table) mountPause(spec *specs.Spec, rootfs string) (func() error, error) {
	if !slices.Equal(spec.Process.Args, []string{api.PauseCommand}) {
		return nil, fmt.Errorf("a %s root runs only %s, not %q: %w", api.DriverPause, api.PauseCommand,
			spec.Process.Args, errdefs.ErrInvalidArgument)
	}
	if !spec.Root.Readonly {
		return nil, fmt.Errorf("a %s root must be read-only (oci_spec root.readonly): %w", api.DriverPause, errdefs.ErrInvalidArgument)
	}
	bin := t.PauseBinary
	if bin == "" {
		bin = DefaultPauseBinary
	}
	src, err := os.OpenFile(bin, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pause bundle: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	defer src.Close()
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", rootfs, err)
	}
	undo := func() error { return unmount(rootfs) }
	if err := unix.Mount("tmpfs", rootfs, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, pauseTmpfs); err != nil {
		_ = os.Remove(rootfs)
		return nil, fmt.Errorf("mount the pause bundle at %s: %w", rootfs, err)
	}
	target := rootfs + api.PauseCommand
	if err := stage(src, target); err != nil {
		_ = undo()
		return nil, fmt.Errorf("pause bundle: %w", err)
	}
	if err := remountReadOnly(target); err != nil {
		_ = undo()
		return nil, fmt.Errorf("pause bundle: %w", err)
	}
	return undo, nil
}
