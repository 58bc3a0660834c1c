package storage

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// emptyDirMode is the mode of a volume's directory: kubelet's for emptyDir (any user of any
// container may write).
const emptyDirMode = 0o777

// EmptyDir makes the pod's emptyDir volume that s (an api.DriverEmptyDir storage) names, at
// api.EmptyDirPath(name), unless an earlier storage made it already: the volume's directory
// on the file system of api.EmptyDirDir (the encrypted scratch disk, or guest RAM without
// one), or a tmpfs for the memory medium (fstype api.EmptyDirMemory). The path comes from the
// validated name, never from the host. A volume lasts until the VM ends, whichever container
// asked for it first: every container of the pod that names it shares it.
func (t *Table) EmptyDir(s *api.Storage) error {
	name, fstype := s.GetSource(), s.GetFstype()
	if err := api.CheckEmptyDirName(name); err != nil {
		return fmt.Errorf("%s storage: %w: %w", api.DriverEmptyDir, err, errdefs.ErrInvalidArgument)
	}
	what := fmt.Sprintf("%s storage %q", api.DriverEmptyDir, name)
	switch want := t.Path(api.EmptyDirPath(name)); {
	case fstype != "" && fstype != api.EmptyDirMemory:
		return fmt.Errorf("%s: fstype %q is neither %q (the memory medium) nor empty (the guest's disk): %w",
			what, fstype, api.EmptyDirMemory, errdefs.ErrInvalidArgument)
	case s.GetMountPoint() != want:
		return fmt.Errorf("%s: mount_point %q is not the volume's directory %s, where the agent makes it: %w",
			what, s.GetMountPoint(), want, errdefs.ErrInvalidArgument)
	case len(s.GetOptions()) > 0:
		return fmt.Errorf("%s: options %v are not allowed (the agent chooses them): %w", what, s.GetOptions(), errdefs.ErrInvalidArgument)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if have, ok := t.emptyDirs[name]; ok {
		if have != fstype {
			return fmt.Errorf("%s: the volume exists with medium %s, not %s: %w",
				what, mediumName(have), mediumName(fstype), errdefs.ErrFailedPrecondition)
		}
		return nil
	}
	if err := t.makeEmptyDir(name, fstype); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	t.emptyDirs[name] = fstype
	return nil
}

// makeEmptyDir creates the volume's directory below the agent's api.EmptyDirDir and, for
// the memory medium, mounts a tmpfs on it.
func (t *Table) makeEmptyDir(name, fstype string) error {
	parent := t.Path(api.EmptyDirDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", parent, err)
	}
	dir := t.Path(api.EmptyDirPath(name))
	if err := os.Mkdir(dir, emptyDirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fail := func(err error) error {
		_ = os.Remove(dir)
		return err
	}
	if fstype == api.EmptyDirMemory {
		err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=%o", emptyDirMode))
		if err != nil {
			return fail(fmt.Errorf("mount tmpfs on %s: %w", dir, err))
		}
		return nil
	}
	if err := os.Chmod(dir, emptyDirMode); err != nil { // past the umask
		return fail(err)
	}
	return nil
}

// emptyDirAnchor returns the directory of the volume p lies in when it is a volume an
// api.DriverEmptyDir storage made, or "". The caller holds t.mu.
func (t *Table) emptyDirAnchor(p string) string {
	for name := range t.emptyDirs {
		if dir := t.Path(api.EmptyDirPath(name)); below(p, dir) {
			return dir
		}
	}
	return ""
}

func mediumName(fstype string) string {
	if fstype == api.EmptyDirMemory {
		return "Memory (tmpfs)"
	}
	return "disk"
}
