package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/storage"
)

// defaultFileMode is the mode of a copied file whose request says 0.
const defaultFileMode = 0o644

// resolveBeneath keeps every lookup below its starting directory and on its file system, and
// refuses symbolic links (and /proc magic links) anywhere in the path, so that nothing the
// host or a container placed below the share can redirect a write elsewhere, nor a mount
// placed below it take the write into another file system.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// CopyFile writes a file on the pod's share, below api.SharedDir: the host's side of the pod,
// never a guest-private directory, a container's root that the guest pulled or another file
// system mounted below the share. The path must be absolute and clean, without ".." and
// without a symbolic link in any element; the data goes to a temporary file in the same
// directory that is then renamed over the target, so readers never see half a file. mode is
// the permission bits (0 means 0644; the S_IFREG type bit may be set; setuid, setgid, sticky
// and other types are refused). make_parents creates missing directories (mode 0755).
func (s *Server) CopyFile(ctx context.Context, req *api.CopyFileRequest) (*api.Empty, error) {
	shared := s.paths.Path(api.SharedDir)
	if err := storage.CheckPath(shared, req.GetPath(), "copy_file path"); err != nil {
		return nil, err
	}
	mode, err := fileMode(req.GetMode())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(shared, 0o755); err != nil {
		return nil, fmt.Errorf("copy file: create %s: %w", shared, err)
	}
	rel := strings.TrimPrefix(req.GetPath(), shared+"/")
	if err := writeFileBeneath(shared, rel, req.GetData(), mode, req.GetMakeParents()); err != nil {
		return nil, fmt.Errorf("copy file %s: %w", req.GetPath(), err)
	}
	return &api.Empty{}, nil
}

func fileMode(m uint32) (uint32, error) {
	if typ := m & unix.S_IFMT; typ != 0 && typ != unix.S_IFREG {
		return 0, fmt.Errorf("mode %#o is not a regular file's: %w", m, errdefs.ErrInvalidArgument)
	}
	perm := m &^ unix.S_IFMT
	if perm&^0o777 != 0 {
		return 0, fmt.Errorf("mode %#o: only permission bits (0777) may be set: %w", m, errdefs.ErrInvalidArgument)
	}
	if perm == 0 {
		perm = defaultFileMode
	}
	return perm, nil
}

// writeFileBeneath atomically writes data to rel, a relative path below the directory root,
// resolving every element with openat2 so that neither "..", a symbolic link nor a mount
// point can lead out.
func writeFileBeneath(root, rel string, data []byte, perm uint32, makeParents bool) error {
	rootFd, err := unix.Openat2(unix.AT_FDCWD, root, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", root, err)
	}
	defer unix.Close(rootFd)
	dirFd, err := openDirBeneath(rootFd, filepath.Dir(rel), makeParents)
	if err != nil {
		return err
	}
	defer unix.Close(dirFd)
	base := filepath.Base(rel)
	var st unix.Stat_t
	err = unix.Fstatat(dirFd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%s is a symbolic link: %w", rel, errdefs.ErrInvalidArgument)
	case err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s exists and is not a regular file: %w", rel, errdefs.ErrInvalidArgument)
	case err != nil && !errors.Is(err, unix.ENOENT):
		return fmt.Errorf("look at %s: %w", rel, err)
	}
	tmp := "." + base + ".veil-tmp-" + strconv.FormatUint(rand.Uint64(), 36)
	if err := writeNew(dirFd, tmp, data, perm); err != nil {
		return err
	}
	if err := unix.Renameat(dirFd, tmp, dirFd, base); err != nil {
		_ = unix.Unlinkat(dirFd, tmp, 0)
		return fmt.Errorf("rename into place: %w", err)
	}
	return nil
}

// writeNew creates name in dirFd (it must not exist), writes data and sets perm exactly (no
// umask).
func writeNew(dirFd int, name string, data []byte, perm uint32) error {
	fd, err := unix.Openat(dirFd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(os.FileMode(perm))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(dirFd, name, 0)
		return fmt.Errorf("write temporary file: %w", err)
	}
	return nil
}

// openDirBeneath opens the directory rel below rootFd (creating the missing ones when
// makeParents is set) without following a symbolic link or leaving rootFd's tree.
func openDirBeneath(rootFd int, rel string, makeParents bool) (int, error) {
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveBeneath}
	if !makeParents {
		fd, err := unix.Openat2(rootFd, rel, how)
		if err != nil {
			return -1, resolveError(rel, err)
		}
		return fd, nil
	}
	cur, err := unix.Openat2(rootFd, ".", how)
	if err != nil {
		return -1, resolveError(".", err)
	}
	done := ""
	for _, elem := range strings.Split(rel, "/") {
		if elem == "." || elem == "" {
			continue
		}
		done = filepath.Join(done, elem)
		if err := unix.Mkdirat(cur, elem, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return -1, fmt.Errorf("create directory %s: %w", done, err)
		}
		next, err := unix.Openat2(cur, elem, how)
		unix.Close(cur)
		if err != nil {
			return -1, resolveError(done, err)
		}
		cur = next
	}
	return cur, nil
}

// resolveError explains why openat2 refused rel.
func resolveError(rel string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s: a symbolic link is in the path: %w", rel, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s: the path leads outside the share (a \"..\" or a mount point on the way): %w", rel, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: an element of the path is not a directory: %w", rel, errdefs.ErrInvalidArgument)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("directory %s does not exist (set make_parents to create it): %w", rel, errdefs.ErrNotFound)
	}
	return fmt.Errorf("open directory %s: %w", rel, err)
}
