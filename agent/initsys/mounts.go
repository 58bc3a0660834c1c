package initsys

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Mount is one file system that init mounts at boot.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
	// Optional mounts may fail (the kernel may lack the file system): a note on the
	// console, not a reason to power off.
	Optional bool
	// AfterModules mounts happen once the kernel modules are loaded, for file systems that
	// may be modules (configfs, which configfs-tsm needs, is one in Debian's kernel).
	AfterModules bool
}

// cgroupRoot is where the cgroup2 hierarchy is mounted.
const cgroupRoot = "/sys/fs/cgroup"

// DefaultMounts returns the mounts of a Veil guest, in order.
func DefaultMounts() []Mount {
	const (
		nodevs = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
		nosuid = unix.MS_NOSUID | unix.MS_NODEV
	)
	return []Mount{
		{Source: "proc", Target: "/proc", FSType: "proc", Flags: nodevs},
		{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: nodevs},
		{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755"},
		{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC,
			Data: "newinstance,ptmxmode=0666,mode=0620"},
		{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: nosuid, Data: "mode=1777"},
		{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: nosuid, Data: "mode=0755"},
		{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", Flags: nosuid, Data: "mode=1777"},
		{Source: "cgroup2", Target: cgroupRoot, FSType: "cgroup2", Flags: nodevs},
		{Source: "configfs", Target: "/sys/kernel/config", FSType: "configfs", Flags: nodevs,
			Optional: true, AfterModules: true},
	}
}

// mountAll mounts, in order, those of ms whose AfterModules is afterModules, creating the
// targets. It returns the failures of required mounts joined; optional ones are only logged.
func mountAll(ctx context.Context, ms []Mount, afterModules bool) error {
	var errs []error
	for _, m := range ms {
		if m.AfterModules != afterModules {
			continue
		}
		err := os.MkdirAll(m.Target, 0o755)
		if err == nil {
			err = unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data)
			if errors.Is(err, unix.EBUSY) {
				err = nil // already mounted
			}
		}
		switch {
		case err == nil:
			log.G(ctx).Debugf("mounted %s on %s", m.FSType, m.Target)
		case m.Optional:
			log.G(ctx).WithError(err).Infof("optional %s not mounted on %s", m.FSType, m.Target)
		default:
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.FSType, m.Target, err))
		}
	}
	return errors.Join(errs...)
}

// enableControllers writes every controller that dir/cgroup.controllers lists into
// dir/cgroup.subtree_control, so that child cgroups (the containers' /veil/<id>) get them.
// When the kernel refuses the whole set, it tries one controller at a time and returns the
// ones that failed.
func enableControllers(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read cgroup controllers: %w", err)
	}
	ctrls := strings.Fields(string(b))
	if len(ctrls) == 0 {
		return nil
	}
	control := filepath.Join(dir, "cgroup.subtree_control")
	all := "+" + strings.Join(ctrls, " +")
	if err := os.WriteFile(control, []byte(all), 0o644); err == nil {
		return nil
	}
	var errs []error
	for _, c := range ctrls {
		if err := os.WriteFile(control, []byte("+"+c), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("enable cgroup controller %s: %w", c, err))
		}
	}
	return errors.Join(errs...)
}

// devLinks are the /dev symbolic links that udev would make and devtmpfs does not.
var devLinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
	{"/proc/kcore", "/dev/core"},
}

func makeDevLinks(ctx context.Context) {
	for _, l := range devLinks {
		if err := os.Symlink(l[0], l[1]); err != nil && !errors.Is(err, os.ErrExist) {
			log.G(ctx).WithError(err).Debugf("no %s link", l[1])
		}
	}
}

// ensureConsole makes fds 0, 1 and 2 /dev/console when the kernel could not give them (an
// initrd without /dev/console leaves them closed).
func ensureConsole() error {
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err == nil {
		return nil
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/console: %w", err)
	}
	for _, target := range []int{0, 1, 2} {
		if fd != target {
			if err := unix.Dup3(fd, target, 0); err != nil {
				return fmt.Errorf("attach /dev/console to fd %d: %w", target, err)
			}
		}
	}
	if fd > 2 {
		_ = unix.Close(fd)
	}
	return nil
}

// unmountAll unmounts everything but / in reverse mount order; what cannot be unmounted
// normally (still busy) is detached.
func unmountAll(ctx context.Context) {
	targets, err := mountPoints("/proc/self/mountinfo")
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot list mounts; nothing unmounted")
		return
	}
	slices.Reverse(targets)
	for _, t := range targets {
		if t == "/" {
			continue
		}
		if err := unix.Unmount(t, 0); err != nil {
			if err := unix.Unmount(t, unix.MNT_DETACH); err != nil {
				log.G(ctx).WithError(err).Debugf("unmount %s", t)
			}
		}
	}
}

// mountPoints returns the mount points that a mountinfo file lists, in its order.
func mountPoints(mountinfo string) ([]string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out = append(out, unescapeOctal(fields[4]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return out, nil
}

// unescapeOctal undoes the \NNN escapes of mountinfo (space, tab, newline, backslash).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return len(s) == 3
}
