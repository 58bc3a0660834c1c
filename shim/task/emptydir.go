package task

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// emptyDirName returns the volume name when src, a bind mount's host source, is a kubelet
// emptyDir volume: a path whose last element is the name and whose element before it is
// api.KubeletEmptyDir. A name that is not a valid volume name (api.CheckEmptyDirName) is an error.
// Other paths, subPath mounts included (kubelet binds those from volume-subpaths/), are not
// emptyDir volumes.
func emptyDirName(src string) (string, bool, error) {
	src = filepath.Clean(src)
	if !filepath.IsAbs(src) || filepath.Base(filepath.Dir(src)) != api.KubeletEmptyDir {
		return "", false, nil
	}
	name := filepath.Base(src)
	if err := api.CheckEmptyDirName(name); err != nil {
		return "", true, fmt.Errorf("emptyDir source %s: %w: %w", src, err, errdefs.ErrInvalidArgument)
	}
	return name, true, nil
}

// emptyDirFstype is the guest storage's fstype for the emptyDir volume at the host's src:
// api.EmptyDirMemory when kubelet mounted a tmpfs there (medium: Memory), "" (the guest's
// disk) otherwise.
func emptyDirFstype(src string) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(src, &st); err != nil {
		return "", fmt.Errorf("emptyDir source %s: statfs: %w", src, err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		return api.EmptyDirMemory, nil
	}
	return "", nil
}

// guestEmptyDirs moves spec's kubelet emptyDir volumes into the guest: each bind mount whose
// source is one (emptyDirName) gets the source api.EmptyDirPath(name), where the agent makes
// the volume, and the returned storages hold one api.DriverEmptyDir storage per volume. The
// host's directory is not shared and stays empty. inGuest marks the mounts moved, which
// guestSpec then leaves alone.
func guestEmptyDirs(spec *specs.Spec) (storages []*api.Storage, inGuest map[int]bool, err error) {
	inGuest = map[int]bool{}
	seen := map[string]string{}
	for i, m := range spec.Mounts {
		if !isBind(m) {
			continue
		}
		name, ok, err := emptyDirName(m.Source)
		if err != nil {
			return nil, nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		if !ok {
			continue
		}
		fstype, err := emptyDirFstype(m.Source)
		if err != nil {
			return nil, nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		if have, dup := seen[name]; dup {
			if have != fstype {
				return nil, nil, fmt.Errorf("mount %s: emptyDir volume %s is both a tmpfs and not one on the host: %w",
					m.Destination, name, errdefs.ErrInvalidArgument)
			}
		} else {
			seen[name] = fstype
			storages = append(storages, &api.Storage{
				Driver: api.DriverEmptyDir, Source: name, Fstype: fstype, MountPoint: api.EmptyDirPath(name),
			})
		}
		spec.Mounts[i].Source = api.EmptyDirPath(name)
		inGuest[i] = true
	}
	return storages, inGuest, nil
}

// emptyDirNote describes the volumes moved into the guest, for the log.
func emptyDirNote(storages []*api.Storage) string {
	names := make([]string, len(storages))
	for i, s := range storages {
		names[i] = s.GetSource()
		if s.GetFstype() == api.EmptyDirMemory {
			names[i] += " (memory)"
		}
	}
	return "emptyDir volumes kept in the guest, not shared from the host: " + strings.Join(names, ", ")
}
