// Package cpio writes reproducible cpio archives in the "newc" format (SVR4
// without checksums, magic 070701): the format the Linux kernel unpacks as an
// initramfs.
//
// An Archive is built in memory and written in one go. The output depends only
// on the entries added, never on the order they were added in, the clock or
// the user running the builder: entries are sorted by path (so every directory
// comes before its children), every mtime is 0, every uid and gid is 0, inode
// numbers are the entries' positions in that order, and the archive ends with
// the TRAILER!!! entry.
package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Mode bits of the cpio format (the same values as the Unix st_mode bits).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeCharDev = 0o020000
	modeSetuid  = 0o4000
	modeSetgid  = 0o2000
	modeSticky  = 0o1000
)

const (
	magic      = "070701"
	headerSize = 110
	trailer    = "TRAILER!!!"
)

// ErrInvalidPath is returned for an entry path that is empty, the root, or
// that leaves the archive ("..").
var ErrInvalidPath = errors.New("invalid cpio entry path")

// entry is one member of the archive.
type entry struct {
	mode      uint32 // type and permission bits
	data      []byte
	rdevMajor uint32
	rdevMinor uint32
	implicit  bool // a parent directory nobody added explicitly
}

// Archive is an in-memory set of cpio entries keyed by path. The zero value
// is not usable; call New.
type Archive struct {
	entries map[string]*entry
}

var _ io.WriterTo = (*Archive)(nil)

// New returns an empty archive.
func New() *Archive {
	return &Archive{entries: make(map[string]*entry)}
}

// Len reports how many entries the archive holds (parent directories that
// were added implicitly included, the trailer not).
func (a *Archive) Len() int { return len(a.entries) }

// AddDir adds a directory. Adding a directory that an earlier entry created
// implicitly as a parent sets its permissions; adding it twice explicitly is
// an error.
func (a *Archive) AddDir(name string, perm fs.FileMode) error {
	p, err := cleanPath(name)
	if err != nil {
		return err
	}
	if old, ok := a.entries[p]; ok && old.implicit {
		old.mode = modeDir | permBits(perm)
		old.implicit = false
		return nil
	}
	return a.add(p, &entry{mode: modeDir | permBits(perm)})
}

// AddFile adds a regular file with the given contents. The archive keeps a
// reference to data: do not change it afterwards.
func (a *Archive) AddFile(name string, perm fs.FileMode, data []byte) error {
	p, err := cleanPath(name)
	if err != nil {
		return err
	}
	return a.add(p, &entry{mode: modeRegular | permBits(perm), data: data})
}

// AddCharDevice adds a character device node (for example /dev/console,
// major 5 minor 1). Writing it needs no privilege: the kernel creates the node
// when it unpacks the archive.
func (a *Archive) AddCharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	p, err := cleanPath(name)
	if err != nil {
		return err
	}
	return a.add(p, &entry{mode: modeCharDev | permBits(perm), rdevMajor: major, rdevMinor: minor})
}

// add inserts e at p after creating the missing parent directories.
func (a *Archive) add(p string, e *entry) error {
	if _, ok := a.entries[p]; ok {
		return fmt.Errorf("cpio entry %q added twice", p)
	}
	if err := a.addParents(p); err != nil {
		return err
	}
	a.entries[p] = e
	return nil
}

// addParents creates, as 0755 directories, every missing parent of p.
func (a *Archive) addParents(p string) error {
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		old, ok := a.entries[dir]
		if ok && old.mode&modeDir == 0 {
			return fmt.Errorf("cpio entry %q: parent %q is not a directory", p, dir)
		}
		if !ok {
			a.entries[dir] = &entry{mode: modeDir | 0o755, implicit: true}
		}
	}
	return nil
}

// WriteTo writes the archive, uncompressed, to w.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for name := range a.entries {
		names = append(names, name)
	}
	sort.Strings(names)
	cw := &countingWriter{w: w}
	for i, name := range names {
		e := a.entries[name]
		nlink := uint32(1)
		if e.mode&modeDir != 0 {
			nlink = 2
		}
		h := header{ino: uint32(i + 1), mode: e.mode, nlink: nlink, size: uint32(len(e.data)),
			rdevMajor: e.rdevMajor, rdevMinor: e.rdevMinor}
		if err := writeEntry(cw, name, h, e.data); err != nil {
			return cw.n, fmt.Errorf("writing cpio entry %q: %w", name, err)
		}
	}
	if err := writeEntry(cw, trailer, header{nlink: 1}, nil); err != nil {
		return cw.n, fmt.Errorf("writing cpio trailer: %w", err)
	}
	return cw.n, nil
}

// header holds the fields of a newc header that vary between entries.
type header struct {
	ino, mode, nlink, size, rdevMajor, rdevMinor uint32
}

// writeEntry writes one header, its name and its data, each padded to a
// multiple of four bytes as newc requires.
func writeEntry(w *countingWriter, name string, h header, data []byte) error {
	if uint64(len(data)) > 0xffffffff {
		return fmt.Errorf("file of %d bytes is too large for newc", len(data))
	}
	fields := []uint32{h.ino, h.mode, 0 /* uid */, 0 /* gid */, h.nlink, 0 /* mtime */, h.size,
		0 /* devmajor */, 0 /* devminor */, h.rdevMajor, h.rdevMinor, uint32(len(name) + 1), 0 /* check */}
	var b strings.Builder
	b.WriteString(magic)
	for _, f := range fields {
		fmt.Fprintf(&b, "%08x", f)
	}
	b.WriteString(name)
	b.WriteByte(0)
	b.Write(make([]byte, pad4(headerSize+len(name)+1)))
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(make([]byte, pad4(len(data))))
	return err
}

// pad4 returns how many zero bytes bring n up to a multiple of four.
func pad4(n int) int { return (4 - n%4) % 4 }

// permBits converts Go's permission and special bits to Unix mode bits.
func permBits(m fs.FileMode) uint32 {
	bits := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= modeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		bits |= modeSetgid
	}
	if m&fs.ModeSticky != 0 {
		bits |= modeSticky
	}
	return bits
}

// cleanPath turns "/a/b/" or "a//b" into "a/b" and rejects paths that are
// empty, the root, or that climb out with "..".
func cleanPath(name string) (string, error) {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	if p == "" || containsDotDot(name) {
		return "", fmt.Errorf("%w: %q", ErrInvalidPath, name)
	}
	return p, nil
}

// containsDotDot reports whether any element of name is "..".
func containsDotDot(name string) bool {
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
