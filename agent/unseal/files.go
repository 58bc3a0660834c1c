package unseal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/kbs-client/sealed"
)

// maxSealedFile bounds the content read from a sealed file.
const maxSealedFile = sealed.MaxValue + len(sealed.Prefix) + 64

// openFlags open an entry of a host's directory for reading: never through a symbolic link,
// never blocking on a FIFO the host planted.
const openFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC

// openSource opens a bind mount's source, a path the agent made (storage.PrepareContainer),
// refusing any symbolic link on the way.
func openSource(p string) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, p, &unix.OpenHow{
		Flags: openFlags, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("open source %s: %w", p, err)
	}
	return fd, nil
}

func fstat(fd int) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func isType(st *unix.Stat_t, t uint32) bool { return st.Mode&unix.S_IFMT == t }

// readDir lists the directory fd from its start.
func readDir(fd int) ([]string, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

// hasPrefix reports whether the regular file fd starts with sealed.Prefix.
func hasPrefix(fd int) (bool, error) {
	buf := make([]byte, len(sealed.Prefix))
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return false, err
	}
	return sealed.IsSealed(buf[:n]), nil
}

// errTooLarge is wrapped by a scan that went beyond MaxEntries or MaxDepth.
var errTooLarge = errors.New("too large to scan for sealed secrets")

// scanner walks a mount's source within the limits.
type scanner struct {
	what    string
	entries int
	found   []string // sealed regular files
	plain   []string // the others
}

// scan returns the paths (relative to src, "." for src itself) of the sealed regular files
// of src, a file or a directory tree, and of the other regular files.
func scan(src int, what string) (found, plain []string, err error) {
	st, err := fstat(src)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: stat source: %w", what, err)
	}
	s := &scanner{what: what}
	switch {
	case isType(st, unix.S_IFREG):
		ok, err := hasPrefix(src)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: read source: %w", what, err)
		}
		if ok {
			s.found = append(s.found, ".")
		} else {
			s.plain = append(s.plain, ".")
		}
	case isType(st, unix.S_IFDIR):
		if err := s.dir(src, ".", 0); err != nil {
			return nil, nil, err
		}
	}
	return s.found, s.plain, nil
}

func (s *scanner) dir(fd int, rel string, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("%s: %s is deeper than %d directories: %w: %w",
			s.what, rel, MaxDepth, errTooLarge, errdefs.ErrInvalidArgument)
	}
	names, err := readDir(fd)
	if err != nil {
		return fmt.Errorf("%s: read directory %s: %w", s.what, rel, err)
	}
	for _, name := range names {
		if s.entries++; s.entries > MaxEntries {
			return fmt.Errorf("%s: more than %d entries: %w: %w",
				s.what, MaxEntries, errTooLarge, errdefs.ErrInvalidArgument)
		}
		p := path.Join(rel, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: stat %s: %w", s.what, p, err)
		}
		if !isType(&st, unix.S_IFREG) && !isType(&st, unix.S_IFDIR) {
			continue // links, FIFOs, sockets, devices hold no content of their own
		}
		child, err := unix.Openat(fd, name, openFlags, 0)
		if err != nil {
			return fmt.Errorf("%s: open %s: %w", s.what, p, err)
		}
		err = s.entry(child, p, depth)
		unix.Close(child)
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *scanner) entry(fd int, p string, depth int) error {
	st, err := fstat(fd)
	if err != nil {
		return fmt.Errorf("%s: stat %s: %w", s.what, p, err)
	}
	if isType(st, unix.S_IFDIR) {
		return s.dir(fd, p, depth+1)
	}
	if !isType(st, unix.S_IFREG) {
		return nil
	}
	ok, err := hasPrefix(fd)
	if err != nil {
		return fmt.Errorf("%s: read %s: %w", s.what, p, err)
	}
	if ok {
		s.found = append(s.found, p)
	} else {
		s.plain = append(s.plain, p)
	}
	return nil
}

// copyMount copies src (a file or a directory tree) to target on the tmpfs, unsealing every
// sealed file on the way.
func (c *copier) copyMount(ctx context.Context, src int, target, what string) error {
	if err := c.tmpfs(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	w := &writer{ctx: ctx, u: c.u, what: what}
	return w.copy(src, ".", target)
}

type writer struct {
	ctx  context.Context
	u    *Unsealer
	what string
}

// copy copies the open file or directory fd (rel below the source) to dst.
func (w *writer) copy(fd int, rel, dst string) error {
	st, err := fstat(fd)
	if err != nil {
		return fmt.Errorf("%s: stat %s: %w", w.what, rel, err)
	}
	mode := uint32(st.Mode & 0o7777)
	switch {
	case isType(st, unix.S_IFDIR):
		if err := unix.Mkdir(dst, mode); err != nil {
			return fmt.Errorf("%s: copy %s: %w", w.what, rel, err)
		}
		if err := w.owner(dst, st, rel); err != nil {
			return err
		}
		return w.dir(fd, rel, dst)
	case isType(st, unix.S_IFREG):
		return w.file(fd, st, rel, dst)
	}
	return fmt.Errorf("%s: %s is neither a file nor a directory: %w", w.what, rel, errdefs.ErrInvalidArgument)
}

func (w *writer) owner(dst string, st *unix.Stat_t, rel string) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("%s: copy the owner of %s: %w", w.what, rel, err)
	}
	// chown clears set-id bits: set the mode again.
	if !isType(st, unix.S_IFLNK) {
		if err := unix.Chmod(dst, uint32(st.Mode&0o7777)); err != nil {
			return fmt.Errorf("%s: copy the mode of %s: %w", w.what, rel, err)
		}
	}
	return nil
}

func (w *writer) dir(fd int, rel, dst string) error {
	names, err := readDir(fd)
	if err != nil {
		return fmt.Errorf("%s: read directory %s: %w", w.what, rel, err)
	}
	for _, name := range names {
		p := path.Join(rel, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("%s: stat %s: %w", w.what, p, err)
		}
		if isType(&st, unix.S_IFLNK) {
			// Kubernetes' volumes are links into ..data: copied as links, never followed
			// by the agent.
			target, err := readlinkat(fd, name)
			if err != nil {
				return fmt.Errorf("%s: read link %s: %w", w.what, p, err)
			}
			if err := unix.Symlinkat(target, unix.AT_FDCWD, dst+"/"+name); err != nil {
				return fmt.Errorf("%s: copy link %s: %w", w.what, p, err)
			}
			if err := w.owner(dst+"/"+name, &st, p); err != nil {
				return err
			}
			continue
		}
		if !isType(&st, unix.S_IFREG) && !isType(&st, unix.S_IFDIR) {
			return fmt.Errorf("%s: %s is neither a file, a directory nor a link: a volume with sealed secrets cannot hold it: %w",
				w.what, p, errdefs.ErrInvalidArgument)
		}
		child, err := unix.Openat(fd, name, openFlags, 0)
		if err != nil {
			return fmt.Errorf("%s: open %s: %w", w.what, p, err)
		}
		err = w.copy(child, p, dst+"/"+name)
		unix.Close(child)
		if err != nil {
			return err
		}
	}
	return nil
}

func readlinkat(fd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(fd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// file copies a regular file, unsealing it when it is sealed.
func (w *writer) file(fd int, st *unix.Stat_t, rel, dst string) error {
	head := make([]byte, len(sealed.Prefix))
	n, _ := unix.Pread(fd, head, 0)
	var data []byte
	if sealed.IsSealed(head[:n]) {
		raw := make([]byte, maxSealedFile+1)
		n, err := unix.Pread(fd, raw, 0)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", w.what, rel, err)
		}
		if n > maxSealedFile {
			return fmt.Errorf("%s: file %s: a sealed value of more than %d bytes: %w", w.what, rel, maxSealedFile, errdefs.ErrInvalidArgument)
		}
		// A trailing newline (echo, a YAML block) is not part of the value.
		value := string(bytes.TrimRight(raw[:n], " \t\r\n"))
		plain, err := w.u.open(w.ctx, value)
		if err != nil {
			return classify(fmt.Errorf("%s: file %s: the sealed value cannot be unsealed: %w", w.what, rel, err))
		}
		data = plain
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(st.Mode&0o777))
	if err != nil {
		clear(data)
		return fmt.Errorf("%s: copy %s: %w", w.what, rel, err)
	}
	if data != nil {
		_, err = out.Write(data)
		clear(data)
	} else {
		_, err = io.Copy(out, io.NewSectionReader(fdReader(fd), 0, 1<<62))
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return fmt.Errorf("%s: copy %s: the tmpfs of unsealed secrets (%s) is full: %w", w.what, rel, TmpfsSize, err)
		}
		return fmt.Errorf("%s: copy %s: %w", w.what, rel, err)
	}
	return w.owner(dst, st, rel)
}

// fdReader reads a file descriptor the caller owns (an os.File would close it when
// collected).
type fdReader int

func (f fdReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(f), p, off)
	if err != nil {
		return 0, err
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}
