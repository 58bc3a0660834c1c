// Package storage is where the paths the host names meet the guest's file systems. It mounts
// the storages the host asks for, opens every path the host names without following it
// anywhere the host could have pointed it, and mounts each container's root file system and
// the sources of its bind mounts where the agent chooses (api.ContainersDir), so that
// libcontainer only ever sees paths the agent made.
//
// The host names paths below api.SharedDir (the pod's virtio-fs share), below the
// storages it mounted under api.StorageDir, and in the pod's emptyDir volumes that the agent
// made under api.EmptyDirDir (EmptyDir), and nowhere else. Such a path is opened from the
// directory of the share or storage it lies on with openat2(2), RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV: no symbolic link the host
// planted on its side of the share, no "..", no mount point on the way. The open file, never
// the path again, is then mounted where it is needed. The agent's own directories
// (api.ContainersDir, api.ImagesDir, api.SandboxDir) are never reachable from a host-named
// path: no storage may be mounted in them, and nothing the agent mounts lies below the share
// or a storage. Container root file systems that the agent pulls itself (api.DriverGuestPull)
// are overlays on images verified and cached in guest memory (GuestPull); the sandbox
// container's root may be the guest image's pause bundle (api.DriverPause).
package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// Table mounts the storages of the host's requests and resolves the paths the host names.
// It remembers the storages it mounted, since a host-named path may lie on one. It is safe
// for concurrent use. Set Pull and PauseBinary before the agent serves.
type Table struct {
	root string // api.GuestRoot, or a test's directory standing for it

	// Pull pulls the images of api.DriverGuestPull roots; nil refuses them.
	Pull *GuestPull
	// PauseBinary is the guest's program mounted as the pause bundle's api.PauseCommand
	// (DefaultPauseBinary when empty).
	PauseBinary string

	mu        sync.Mutex
	storages  map[string]bool   // mount points of the host's storages (SharedDir, below StorageDir)
	emptyDirs map[string]string // the pod's emptyDir volumes made (EmptyDir): name -> fstype
}

// New returns a Table for the directories below root (api.GuestRoot when empty; tests use a
// temporary directory, which then stands for api.GuestRoot in every path).
func New(root string) *Table {
	if root == "" {
		root = api.GuestRoot
	}
	return &Table{root: root, storages: map[string]bool{}, emptyDirs: map[string]string{}}
}

// Path maps p, a path below api.GuestRoot, into the Table's root.
func (t *Table) Path(p string) string {
	return t.root + strings.TrimPrefix(p, api.GuestRoot)
}

// Root is the directory standing for api.GuestRoot.
func (t *Table) Root() string { return t.root }

// Mount mounts s, a storage of the host (virtiofs, tmpfs or bind), and returns what undoes
// it. The mount point must be api.SharedDir (for the pod's virtio-fs share) or lie below
// api.StorageDir, and may not be at, below or above another storage: the directories on the
// way are the agent's, so nothing the host made lies on the way to a mount point. A bind
// storage's source is opened like any host-named path (Open).
func (t *Table) Mount(s *api.Storage) (func() error, error) {
	mp := s.GetMountPoint()
	if err := t.checkMountPoint(s.GetDriver(), mp); err != nil {
		return nil, err
	}
	source, fstype, flags, err := t.storageSource(s)
	if err != nil {
		return nil, err
	}
	if !t.claim(mp) {
		return nil, fmt.Errorf("storage mount_point %s is at, below or above another storage: %w", mp, errdefs.ErrInvalidArgument)
	}
	undo := func() error {
		err := unmount(mp)
		t.release(mp)
		return err
	}
	if err := t.mountStorage(s, mp, source, fstype, flags); err != nil {
		_ = undo()
		return nil, err
	}
	return undo, nil
}

// checkMountPoint refuses mount points the host may not choose.
func (t *Table) checkMountPoint(driver, mp string) error {
	shared, storageDir := t.Path(api.SharedDir), t.Path(api.StorageDir)
	switch {
	case driver == api.DriverGuestPull || driver == api.DriverPause:
		return fmt.Errorf("storage at %s: driver %s is only for a container's root file system "+
			"(CreateContainer, mount_point %s): %w", mp, driver, api.ContainerRootfs("<container id>"), errdefs.ErrInvalidArgument)
	case driver == api.DriverEmptyDir:
		return fmt.Errorf("storage at %s: driver %s is only for a container's storages (CreateContainer): %w",
			mp, driver, errdefs.ErrInvalidArgument)
	case driver != api.DriverVirtioFS && driver != api.DriverTmpfs && driver != api.DriverBind:
		return fmt.Errorf("storage at %s: unknown driver %q (want %s, %s, %s, %s, %s or %s): %w", mp, driver,
			api.DriverVirtioFS, api.DriverTmpfs, api.DriverBind, api.DriverGuestPull, api.DriverPause,
			api.DriverEmptyDir, errdefs.ErrInvalidArgument)
	case mp == shared:
		if driver != api.DriverVirtioFS {
			return fmt.Errorf("storage at %s: only the pod's virtio-fs share may be mounted there, not %s: %w",
				mp, driver, errdefs.ErrInvalidArgument)
		}
		return nil
	}
	if err := CheckPath(storageDir, mp, "storage mount_point"); err != nil {
		return fmt.Errorf("%w (the host may mount storages at %s (virtio-fs) or below %s)", err, shared, storageDir)
	}
	return nil
}

// storageSource works out what mount(2) gets for s.
func (t *Table) storageSource(s *api.Storage) (source, fstype string, flags uintptr, err error) {
	switch s.GetDriver() {
	case api.DriverVirtioFS:
		if s.GetSource() == "" {
			return "", "", 0, fmt.Errorf("virtiofs storage at %s has no source tag: %w", s.GetMountPoint(), errdefs.ErrInvalidArgument)
		}
		return s.GetSource(), "virtiofs", 0, nil // the kernel's file system type, not the driver's name
	case api.DriverTmpfs:
		return "tmpfs", "tmpfs", 0, nil
	}
	return s.GetSource(), "", unix.MS_BIND, nil // bind: the source is opened by mountStorage
}

// mountStorage creates the mount point and mounts the storage on it.
func (t *Table) mountStorage(s *api.Storage, mp, source, fstype string, flags uintptr) error {
	target, err := t.makeMountPoint(mp)
	if err != nil {
		return err
	}
	defer target.Close()
	if flags&unix.MS_BIND != 0 {
		src, err := t.Open(source, "bind storage source")
		if err != nil {
			return err
		}
		defer src.Close()
		source = fdPath(src)
	}
	optFlags, data := parseOptions(s.GetOptions())
	if err := unix.Mount(source, fdPath(target), fstype, flags|optFlags, data); err != nil {
		return fmt.Errorf("mount %s storage %q at %s: %w", s.GetDriver(), s.GetSource(), mp, err)
	}
	if flags&unix.MS_BIND != 0 && optFlags&unix.MS_RDONLY != 0 {
		if err := remountReadOnly(mp); err != nil {
			return err
		}
	}
	return nil
}

// makeMountPoint creates mp and its parents below the Table's root, refusing any link.
func (t *Table) makeMountPoint(mp string) (*os.File, error) {
	root, err := openDir(t.root)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return mkdirBeneath(root, strings.TrimPrefix(mp, t.root+"/"), mp)
}

// claim records mp as a storage's mount point unless it is at, below or above another.
func (t *Table) claim(mp string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for other := range t.storages {
		if below(mp, other) || below(other, mp) {
			return false
		}
	}
	t.storages[mp] = true
	return true
}

func (t *Table) release(mp string) {
	t.mu.Lock()
	delete(t.storages, mp)
	t.mu.Unlock()
}

// Open opens p, a path the host named, as an O_PATH file for a mount. p must lie below
// api.SharedDir, below a storage's mount point or in an emptyDir volume (or be one of
// these), and is opened from that
// directory without a symbolic link, magic link, ".." or mount point on the way. what names
// the field in errors.
func (t *Table) Open(p, what string) (*os.File, error) {
	if err := CheckPath(t.root, p, what); err != nil {
		return nil, err
	}
	anchor := t.anchorOf(p)
	if anchor == "" {
		return nil, fmt.Errorf("%s %q is neither on the pod's share (%s) nor on a storage of the host "+
			"nor in an emptyDir volume of the pod (%s/<name>, made by an %s storage): %w",
			what, p, t.Path(api.SharedDir), t.Path(api.EmptyDirDir), api.DriverEmptyDir, errdefs.ErrInvalidArgument)
	}
	dir, err := openDir(anchor)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer dir.Close()
	f, err := openBeneath(dir, strings.TrimPrefix(strings.TrimPrefix(p, anchor), "/"), p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return f, nil
}

// anchorOf returns the share, storage or emptyDir volume directory p lies on, or "".
func (t *Table) anchorOf(p string) string {
	if shared := t.Path(api.SharedDir); below(p, shared) {
		return shared
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if dir := t.emptyDirAnchor(p); dir != "" {
		return dir
	}
	var best string
	for mp := range t.storages {
		if below(p, mp) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

// unmount detaches the mount at mountPoint (and whatever is mounted below it) and removes
// the empty directory.
func unmount(mountPoint string) error {
	if err := unix.Unmount(mountPoint, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", mountPoint, err)
	}
	if err := os.Remove(mountPoint); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove mount point: %w", err)
	}
	return nil
}

// mountOptions are the mount(8) options that become flags; the others are file-system data.
var mountOptions = map[string]uintptr{
	"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV,
	"noexec": unix.MS_NOEXEC, "noatime": unix.MS_NOATIME, "relatime": unix.MS_RELATIME,
}

// parseOptions splits mount(8)-style options into flags and file-system data.
func parseOptions(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		if f, ok := mountOptions[o]; ok {
			flags |= f
		} else if o != "rw" && o != "" {
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

// removeEmptyParents removes dir and its parents up to (not including) stop while they are
// empty.
func removeEmptyParents(dir, stop string) {
	for below(dir, stop) && dir != stop {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}
