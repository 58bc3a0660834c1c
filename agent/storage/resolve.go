package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// beneath keeps a lookup below its starting directory and on its file system: no symbolic
// link, no /proc magic link, no "..", no mount point on the way. A host-named path is opened
// with it from the directory of the share or storage it lies on, so that nothing the host
// placed there leads anywhere else in the guest.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// noLinks opens the agent's own directories (absolute paths it built itself) refusing any
// symbolic link on the way; they may cross mounts (/run is one).
const noLinks = unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

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

// below reports whether p is dir or lies below it.
func below(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// openDir opens dir, an absolute path the agent built, as an O_PATH directory, refusing a
// symbolic link anywhere in it.
func openDir(dir string) (*os.File, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: noLinks,
	})
	if err != nil {
		return nil, resolveError(dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// openBeneath opens rel below the directory dir as an O_PATH file with the beneath rules.
// name is the full path, for errors and the file's name.
func openBeneath(dir *os.File, rel, name string) (*os.File, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(int(dir.Fd()), rel, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: beneath,
	})
	if err != nil {
		return nil, resolveError(name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// mkdirBeneath creates rel and its missing parents below dir (mode 0755) with the beneath
// rules, and returns the last directory opened as O_PATH.
func mkdirBeneath(dir *os.File, rel, name string) (*os.File, error) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: beneath}
	cur, err := unix.Openat2(int(dir.Fd()), ".", how)
	if err != nil {
		return nil, resolveError(name, err)
	}
	for _, elem := range strings.Split(rel, "/") {
		if elem == "" || elem == "." {
			continue
		}
		if err := unix.Mkdirat(cur, elem, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return nil, fmt.Errorf("create directory %s: %w", name, err)
		}
		next, err := unix.Openat2(cur, elem, how)
		unix.Close(cur)
		if err != nil {
			return nil, resolveError(name, err)
		}
		cur = next
	}
	return os.NewFile(uintptr(cur), name), nil
}

// fdPath is the /proc magic link of an open file: mount(2) given it acts on exactly that
// file, whatever has happened to its path since it was opened.
func fdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// bindFile bind-mounts the open file src (not recursively: nothing mounted below it comes
// along) on target, a directory or file the agent made in its own directories.
func bindFile(src *os.File, target string) error {
	if err := unix.Mount(fdPath(src), target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src.Name(), target, err)
	}
	return nil
}

// remountReadOnly makes the bind mount at target read-only (a bind mount ignores MS_RDONLY
// until it is remounted).
func remountReadOnly(target string) error {
	if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// isDir reports whether the open file is a directory.
func isDir(f *os.File) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// resolveError explains why openat2 refused name.
func resolveError(name string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s: a symbolic link is in the path (the agent follows none the host could have made): %w",
			name, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s: the path leaves its share or storage (a \"..\" or a mount point on the way): %w",
			name, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: an element of the path is not a directory: %w", name, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s does not exist in the guest: %w", name, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("open %s: %w", name, err)
}
