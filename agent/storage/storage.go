// Package storage mounts the file systems the host asks for (virtio-fs shares, guest bind
// mounts, tmpfs) at guest paths that are checked to lie below /run/veil/, and unmounts them.
// It also mounts container root file systems that the agent pulls itself (GuestPull, driver
// image_guest_pull): an overlay on an image that agent/imagepull verified and cached in
// guest memory below /run/veil/images, which the host can neither mount on nor write into.
package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// Root is the only guest directory below which the host may place mounts and files.
const Root = "/run/veil"

// CheckPath returns an error unless p is an absolute, clean path strictly below root with no
// ".." element. what names the field in the error.
func CheckPath(root, p, what string) error {
	if p == "" {
		return fmt.Errorf("%s is empty: %w", what, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s %q is not an absolute path: %w", what, p, errdefs.ErrInvalidArgument)
	}
	for _, elem := range strings.Split(p, "/") {
		if elem == ".." {
			return fmt.Errorf("%s %q contains \"..\": %w", what, p, errdefs.ErrInvalidArgument)
		}
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("%s %q is not a clean path: %w", what, p, errdefs.ErrInvalidArgument)
	}
	if !strings.HasPrefix(p, root+"/") {
		return fmt.Errorf("%s %q is not below %s: %w", what, p, root, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Mount mounts s at s.MountPoint, creating the directory. It refuses mount points outside Root
// or inside ImagesDir, and drivers it does not know. GuestPullDriver storages are mounted by
// GuestPull.Mount, which needs the container's spec; here they are refused.
func Mount(s *api.Storage) error {
	if err := CheckHostPath(Root, s.GetMountPoint(), "storage mount_point"); err != nil {
		return err
	}
	var (
		source, fstype = s.GetSource(), s.GetFstype()
		flags          uintptr
	)
	switch s.GetDriver() {
	case "virtiofs":
		if source == "" {
			return fmt.Errorf("virtiofs storage at %s has no source tag: %w", s.GetMountPoint(), errdefs.ErrInvalidArgument)
		}
		fstype = "virtiofs"
	case "bind":
		if err := CheckHostPath(Root, source, "bind storage source"); err != nil {
			return err
		}
		fstype, flags = "", unix.MS_BIND
	case "tmpfs":
		source, fstype = "tmpfs", "tmpfs"
	case GuestPullDriver:
		return fmt.Errorf("storage at %s: driver %s is only for a container's root file system "+
			"(CreateContainer): %w", s.GetMountPoint(), GuestPullDriver, errdefs.ErrInvalidArgument)
	default:
		return fmt.Errorf("storage at %s: unknown driver %q (want virtiofs, bind, tmpfs or %s): %w",
			s.GetMountPoint(), s.GetDriver(), GuestPullDriver, errdefs.ErrInvalidArgument)
	}
	optFlags, data := parseOptions(s.GetOptions())
	if err := os.MkdirAll(s.GetMountPoint(), 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	if err := unix.Mount(source, s.GetMountPoint(), fstype, flags|optFlags, data); err != nil {
		return fmt.Errorf("mount %s storage %q at %s: %w", s.GetDriver(), source, s.GetMountPoint(), err)
	}
	if flags&unix.MS_BIND != 0 && optFlags&unix.MS_RDONLY != 0 {
		// A bind mount ignores MS_RDONLY until it is remounted.
		if err := unix.Mount("", s.GetMountPoint(), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(s.GetMountPoint(), unix.MNT_DETACH)
			return fmt.Errorf("make bind mount %s read-only: %w", s.GetMountPoint(), err)
		}
	}
	return nil
}

// Unmount detaches the mount at mountPoint and removes the empty directory.
func Unmount(mountPoint string) error { return unmount(Root, mountPoint) }

func unmount(root, mountPoint string) error {
	if err := CheckPath(root, mountPoint, "mount point"); err != nil {
		return err
	}
	if err := unix.Unmount(mountPoint, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", mountPoint, err)
	}
	if err := os.Remove(mountPoint); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove mount point: %w", err)
	}
	return nil
}

// parseOptions splits mount(8)-style options into flags and file-system data.
func parseOptions(opts []string) (uintptr, string) {
	known := map[string]uintptr{
		"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV,
		"noexec": unix.MS_NOEXEC, "noatime": unix.MS_NOATIME, "relatime": unix.MS_RELATIME,
	}
	var flags uintptr
	var data []string
	for _, o := range opts {
		if f, ok := known[o]; ok {
			flags |= f
		} else if o != "rw" && o != "" {
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}
