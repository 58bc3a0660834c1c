package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// containerDir is the host directory of one container below the shared directory.
func (p *Pod) containerDir(cid string) string { return filepath.Join(p.SharedDir(), cid) }

// MountRootfs mounts a container's root filesystem (containerd's snapshot mounts, or the
// bundle's rootfs directory when there are none) below the shared directory and returns its
// path in the guest.
func (p *Pod) MountRootfs(cid string, rootfs []*types.Mount, bundleRootfs string) (string, error) {
	target := filepath.Join(p.containerDir(cid), "rootfs")
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", fmt.Errorf("rootfs of %s: %w", cid, err)
	}
	if len(rootfs) == 0 {
		if err := unix.Mount(bundleRootfs, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return "", fmt.Errorf("bind rootfs %s of %s: %w", bundleRootfs, cid, err)
		}
		return p.guestPath(target), nil
	}
	ms := make([]mount.Mount, 0, len(rootfs))
	for _, m := range rootfs {
		ms = append(ms, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if err := mount.All(ms, target); err != nil {
		_ = mount.UnmountAll(target, unix.MNT_DETACH)
		return "", fmt.Errorf("mount rootfs of %s: %w", cid, err)
	}
	return p.guestPath(target), nil
}

// ShareBind bind-mounts the host file or directory src below the container's shared
// directory (read-only when ro) and returns its path in the guest. The n-th mount of a
// container gets mounts/<n>.
func (p *Pod) ShareBind(cid string, n int, src string, ro bool) (string, error) {
	st, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("bind source %s: %w: %w", src, err, errdefs.ErrInvalidArgument)
	}
	target := filepath.Join(p.containerDir(cid), "mounts", fmt.Sprint(n))
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", err
	}
	if st.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		err = os.WriteFile(target, nil, 0o644)
	}
	if err != nil {
		return "", fmt.Errorf("bind target for %s: %w", src, err)
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("bind %s: %w", src, err)
	}
	if ro {
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return "", fmt.Errorf("bind %s read-only: %w", src, err)
		}
	}
	return p.guestPath(target), nil
}

// RemoveContainer unmounts everything of container cid below the shared directory and
// removes its directory.
func (p *Pod) RemoveContainer(cid string) error {
	return Cleanup(p.containerDir(cid))
}

// CleanupContainer is RemoveContainer for a pod this process does not own (the shim's
// `delete` action after the shim died).
func CleanupContainer(vmID, cid string) error {
	return Cleanup(filepath.Join(DirOf(vmID), "shared", cid))
}

func (p *Pod) guestPath(host string) string {
	rel, _ := filepath.Rel(p.SharedDir(), host)
	return filepath.Join(api.SharedDir, rel)
}

// Cleanup unmounts every mount at or below dir, deepest first, then removes dir. It never
// removes a directory that still has a mount below it (that would delete files of a
// container's root filesystem). A missing dir is not an error.
func Cleanup(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for pass := 0; pass < 3; pass++ {
		mounts, err := mountsBelow(dir)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			break
		}
		errs = errs[:0]
		for _, m := range mounts {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	if left, _ := mountsBelow(dir); len(left) > 0 {
		return fmt.Errorf("cleanup %s: still mounted: %s: %w", dir, strings.Join(left, ", "), errors.Join(errs...))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cleanup %s: %w", dir, err)
	}
	return nil
}

// mountsBelow lists the mount points at or below dir, deepest first.
func mountsBelow(dir string) ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []string
	for _, m := range infos {
		out = append(out, m.Mountpoint)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}
