//go:build e2e

package e2e

// More attacks along the lines of hostile_paths_test.go: guest paths named directly or with
// "..", "//" and "/./", a root that is a link, an overlay of guest directories, storages on
// the agent's own directories.

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
)

func extraAttacks() []hostileAttack {
	return []hostileAttack{
		{"volume_source_image_cache", volumeSource(func(e *hostileEnv, id string) string { return api.ImagesDir })},
		{"volume_source_sandbox_dir", volumeSource(func(e *hostileEnv, id string) string { return api.SandboxDir })},
		{"volume_source_dotdot", volumeSource(func(e *hostileEnv, id string) string {
			return api.SharedVolume(id, 0) + "/../../../../images"
		})},
		{"volume_source_double_slash", volumeSource(func(e *hostileEnv, id string) string { return api.GuestRoot + "//images" })},
		{"volume_source_dot", volumeSource(func(e *hostileEnv, id string) string { return api.GuestRoot + "/./images" })},
		{"volume_source_proc_self_root", volumeSource(func(e *hostileEnv, id string) string {
			return "/proc/self/root" + api.ImagesDir
		})},
		{"volume_overlay_of_guest_dirs", overlayVolume},
		{"root_path_link_in_share", linkedRoot},
		{"storage_in_image_cache", storageAt(func(id string) string { return api.ImagesDir + "/" + id })},
		{"storage_in_containers_dir", storageAt(func(id string) string { return api.ContainersDir + "/" + id + "-x" })},
		{"storage_mount_point_dotdot", storageAt(func(id string) string { return api.SharedDir + "/" + id + "/../../images/x" })},
		{"storage_mount_point_double_slash", storageAt(func(id string) string { return api.SharedDir + "//" + id + "/x" })},
		{"bind_storage_from_proc_self_root", bindStorageFrom("/proc/self/root" + api.ImagesDir)},
		{"bind_storage_from_containers_dir", bindStorageFrom(api.ContainersDir)},
		{"copy_file_odd_paths", copyOddPaths},
	}
}

// volumeSource points app's /data at a guest path the host names in the spec (no link).
func volumeSource(src func(e *hostileEnv, id string) string) func(t *testing.T, e *hostileEnv) {
	return func(t *testing.T, e *hostileEnv) {
		id := e.newID("src")
		e.cleanShare(t, id)
		r := e.honest(t, id, hostileApp)
		s := src(e, id)
		r.mount("/data").Source = s
		e.attackCreate(t, "app with /data from "+s, r, nil)
	}
}

// overlayVolume makes /data an overlay whose lower directories are the guest's own.
func overlayVolume(t *testing.T, e *hostileEnv) {
	id := e.newID("ovl")
	e.cleanShare(t, id)
	r := e.honest(t, id, hostileApp)
	*r.mount("/data") = specs.Mount{Destination: "/data", Type: "overlay", Source: "overlay",
		Options: []string{"lowerdir=/etc/veil:/usr/bin"}}
	e.attackCreate(t, "app with /data an overlay of /etc/veil and /usr/bin", r, nil, "image.json")
}

// linkedRoot shares a root file system (no guest pull) whose directory in the share is a
// link to the guest's own root; under allow-all the container then runs the guest's agent.
func linkedRoot(t *testing.T, e *hostileEnv) {
	id := e.newID("root")
	e.cleanShare(t, id)
	r := e.honest(t, id, hostileApp)
	root := api.SharedRootfs(id)
	if err := os.Symlink("/", e.hostPath(root)); err != nil {
		t.Fatal(err)
	}
	r.spec.Root.Path, r.storages = root, nil
	e.attackCreate(t, "app with root.path a link to /", r, []string{"/usr/bin/veil-agent", "--version"}, "veil-agent ")
}

// storageAt adds a tmpfs storage at the mount point mp(id) to app's request.
func storageAt(mp func(id string) string) func(t *testing.T, e *hostileEnv) {
	return func(t *testing.T, e *hostileEnv) {
		id := e.newID("stor")
		e.cleanShare(t, id)
		r := e.honest(t, id, hostileApp)
		r.storages = append(r.storages, &api.Storage{Driver: api.DriverTmpfs, Source: "tmpfs", MountPoint: mp(id)})
		e.attackCreate(t, "tmpfs storage at "+mp(id), r, nil)
	}
}

// bindStorageFrom adds a bind storage of the guest path src below api.StorageDir.
func bindStorageFrom(src string) func(t *testing.T, e *hostileEnv) {
	return func(t *testing.T, e *hostileEnv) {
		id := e.newID("bsrc")
		e.cleanShare(t, id)
		r := e.honest(t, id, hostileApp)
		mp := api.StorageDir + "/" + id
		r.storages = append(r.storages, &api.Storage{Driver: api.DriverBind, Source: src, MountPoint: mp})
		if e.policy == polAllowAll {
			r.mount("/data").Source = mp // shows what the storage is
		}
		e.attackCreate(t, "bind storage of "+src, r, nil)
	}
}

// copyOddPaths sends CopyFile with paths that are not clean: each is refused (the policy's
// prefix check and the agent's must not be fooled by "//", "/./" or "..").
func copyOddPaths(t *testing.T, e *hostileEnv) {
	id := e.newID("odd")
	e.cleanShare(t, id)
	if err := os.MkdirAll(filepath.Join(e.share, id), 0o755); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot(t)
	for _, p := range []string{
		api.SharedDir + "//" + id + "/f",
		api.SharedDir + "/./" + id + "/f",
		api.SharedDir + "/" + id + "/../" + id + "/f",
		api.SharedDir + "/../images/f",
		api.SharedDir + "/" + id + "/",
	} {
		refused(t, "CopyFile "+p, e.copyFile(t, p))
	}
	e.checkShare(t, before)
}
