package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// mountTypes are the mount types a container's spec may use besides bind mounts. Any other
// type (overlay, a block device's file system, ...) would take a guest path or device in its
// source or options.
var mountTypes = map[string]bool{
	"proc": true, "sysfs": true, "tmpfs": true, "devpts": true, "mqueue": true, "cgroup": true, "cgroup2": true,
}

// IsBind reports whether m is a bind mount as runc reads it: type "bind", or a "bind" or
// "rbind" option whatever the type says.
func IsBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// cleanups runs undo steps in reverse order of their addition, reporting every failure.
type cleanups []func() error

func (u *cleanups) add(f func() error) { *u = append(*u, f) }

func (u *cleanups) run() error {
	var errs []error
	for i := len(*u) - 1; i >= 0; i-- {
		if err := (*u)[i](); err != nil {
			errs = append(errs, err)
		}
	}
	*u = nil
	return errors.Join(errs...)
}

// PrepareContainer mounts what container id needs and points spec at it: the request's
// storages (Mount; the pod's emptyDir volumes, EmptyDir); the root file system at api.ContainerRootfs(id), which is a pulled image
// (an api.DriverGuestPull storage), the pause bundle (api.DriverPause) or else the directory
// the spec's root.path names on the share or a storage, opened there (Open) and bound; and
// the source of each bind mount, opened the same way and bound at
// api.ContainersDir/<id>/mounts/<n>. spec's root.path and bind sources then name those
// paths, which only the agent made. The returned function undoes everything; on error
// nothing is left but the image cache.
func (t *Table) PrepareContainer(ctx context.Context, id string, spec *specs.Spec, storages []*api.Storage) (func() error, error) {
	var undo cleanups
	fail := func(err error) (func() error, error) {
		_ = undo.run()
		return nil, err
	}
	dir := t.Path(api.ContainersDir) + "/" + id
	if err := t.makeContainerDir(dir); err != nil {
		return fail(err)
	}
	undo.add(func() error { return removeDir(dir) })
	root, err := t.rootStorage(id, spec, storages)
	if err != nil {
		return fail(err)
	}
	for i, s := range storages {
		if s == root {
			continue
		}
		if s.GetDriver() == api.DriverEmptyDir {
			if err := t.EmptyDir(s); err != nil {
				return fail(fmt.Errorf("storages[%d]: %w", i, err))
			}
			continue // the pod's: it outlives the container
		}
		u, err := t.Mount(s)
		if err != nil {
			return fail(fmt.Errorf("storages[%d]: %w", i, err))
		}
		undo.add(u)
	}
	rootfs := t.Path(api.ContainerRootfs(id))
	u, err := t.mountRoot(ctx, id, spec, root, rootfs)
	if err != nil {
		return fail(err)
	}
	undo.add(u)
	spec.Root.Path = rootfs
	if err := t.bindSources(spec, dir, &undo); err != nil {
		return fail(err)
	}
	return undo.run, nil
}

// makeContainerDir creates the container's own directory, which must not exist yet.
func (t *Table) makeContainerDir(dir string) error {
	if err := os.MkdirAll(t.Path(api.ContainersDir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", t.Path(api.ContainersDir), err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("container directory %s exists: %w", dir, errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// removeDir removes the container's directory once everything in it is unmounted: only the
// empty directories and files the agent made, never a tree that something may still be
// mounted in.
func removeDir(dir string) error {
	if ents, err := os.ReadDir(dir + "/mounts"); err == nil {
		for _, e := range ents {
			_ = os.Remove(dir + "/mounts/" + e.Name())
		}
		_ = os.Remove(dir + "/mounts")
	}
	_ = os.Remove(dir + "/rootfs")
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// rootStorage picks out the storage of the root file system (a pulled image or the pause
// bundle; nil when the host shares the root) and checks that it names the container's root
// path, the one place such a root may be.
func (t *Table) rootStorage(id string, spec *specs.Spec, storages []*api.Storage) (*api.Storage, error) {
	var root *api.Storage
	want := t.Path(api.ContainerRootfs(id))
	for i, s := range storages {
		if d := s.GetDriver(); d != api.DriverGuestPull && d != api.DriverPause {
			continue
		}
		switch {
		case root != nil:
			return nil, fmt.Errorf("storages[%d]: a second root file system (%s): %w", i, s.GetDriver(), errdefs.ErrInvalidArgument)
		case s.GetMountPoint() != want:
			return nil, fmt.Errorf("storages[%d]: %s storage mount_point %q is not the container's root %s, where the agent mounts it: %w",
				i, s.GetDriver(), s.GetMountPoint(), want, errdefs.ErrInvalidArgument)
		case spec.Root.Path != want:
			return nil, fmt.Errorf("oci_spec root.path %q is not the %s storage's mount point %s: %w",
				spec.Root.Path, s.GetDriver(), want, errdefs.ErrInvalidArgument)
		}
		root = s
	}
	return root, nil
}

// mountRoot mounts the container's root file system at rootfs.
func (t *Table) mountRoot(ctx context.Context, id string, spec *specs.Spec, root *api.Storage, rootfs string) (func() error, error) {
	switch root.GetDriver() {
	case api.DriverGuestPull:
		if t.Pull == nil {
			return nil, fmt.Errorf("%s storage: this agent has no image pull configured: %w", api.DriverGuestPull, errdefs.ErrFailedPrecondition)
		}
		what := "oci_spec annotation " + api.ImageDigestAnnotation
		digest := spec.Annotations[api.ImageDigestAnnotation]
		if err := CheckDigest(digest, what); err != nil {
			return nil, err
		}
		return t.Pull.Mount(ctx, id, root.GetSource(), digest, rootfs)
	case api.DriverPause:
		return t.mountPause(spec, rootfs)
	}
	src, err := t.Open(spec.Root.Path, "oci_spec root.path")
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if dir, err := isDir(src); err != nil || !dir {
		return nil, fmt.Errorf("oci_spec root.path %q is not a directory: %w", spec.Root.Path, errdefs.ErrInvalidArgument)
	}
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", rootfs, err)
	}
	if err := bindFile(src, rootfs); err != nil {
		_ = os.Remove(rootfs)
		return nil, err
	}
	return func() error { return unmount(rootfs) }, nil
}

// bindSources opens the source of every bind mount of spec on the share or a storage (or the
// sandbox's resolv.conf), binds it at dir/mounts/<n> and points the mount at it. Other
// mounts must be of a type that takes no path.
func (t *Table) bindSources(spec *specs.Spec, dir string, undo *cleanups) error {
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		what := fmt.Sprintf("oci_spec mounts[%d] (%s)", i, m.Destination)
		if !IsBind(*m) {
			if !mountTypes[m.Type] {
				return fmt.Errorf("%s: mount type %q is not allowed in the guest (bind, %s): %w",
					what, m.Type, strings.Join(sortedKeys(mountTypes), ", "), errdefs.ErrInvalidArgument)
			}
			continue
		}
		src, err := t.openSource(m.Source, what+" source")
		if err != nil {
			return err
		}
		target := dir + "/mounts/" + strconv.Itoa(i)
		err = stage(src, target)
		src.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		undo.add(func() error { return unmount(target) })
		m.Source = target
	}
	return nil
}

// openSource opens a bind mount's source: the sandbox's resolv.conf, which the agent wrote,
// or a path on the share or a storage.
func (t *Table) openSource(p, what string) (*os.File, error) {
	if p != t.Path(api.ResolvConf) {
		return t.Open(p, what)
	}
	dir, err := openDir(t.Path(api.SandboxDir))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer dir.Close()
	return openBeneath(dir, strings.TrimPrefix(p, t.Path(api.SandboxDir)+"/"), p)
}

// stage makes target (a directory or an empty file, as src is) and binds src on it.
func stage(src *os.File, target string) error {
	if err := os.MkdirAll(target[:strings.LastIndexByte(target, '/')], 0o755); err != nil {
		return err
	}
	dir, err := isDir(src)
	if err != nil {
		return err
	}
	if dir {
		err = os.Mkdir(target, 0o755)
	} else {
		var fd int
		if fd, err = unix.Open(target, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644); err == nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", target, err)
	}
	if err := bindFile(src, target); err != nil {
		_ = os.Remove(target)
		return err
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
