package storage

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// newTable returns a Table rooted in a temporary directory, with a share whose host side
// holds what the host could have planted: links leading out, a link staying in, a link as an
// intermediate element, a tmpfs mounted below it, and the guest's own secrets beside it.
func newTable(t *testing.T) (*Table, string) {
	t.Helper()
	needRoot(t)
	tb := New(mountedTempDir(t))
	shared := tb.Path(api.SharedDir)
	for _, d := range []string{shared + "/c1/mounts/dir", tb.Path(api.ImagesDir), tb.Path(api.ContainerRootfs("other")) + "/bin"} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(shared+"/c1/mounts/file", []byte("volume"), 0o644))
	must(t, os.WriteFile(tb.Path(api.ImagesDir)+"/secret", []byte("guest"), 0o600))
	for link, target := range map[string]string{
		shared + "/c1/mounts/to-root":     "/",
		shared + "/c1/mounts/to-images":   tb.Path(api.ImagesDir),
		shared + "/c1/mounts/relative":    "../../../images",
		shared + "/c1/mounts/staying-in":  "dir",
		shared + "/c1/mounts/to-other":    tb.Path(api.ContainerRootfs("other")),
		shared + "/linked":                "c1/mounts",
		shared + "/c1/mounts/to-proc-env": "/proc/self/root",
	} {
		must(t, os.Symlink(target, link))
	}
	must(t, os.Mkdir(shared+"/mnt", 0o755))
	must(t, unix.Mount("tmpfs", shared+"/mnt", "tmpfs", 0, "size=1m"))
	return tb, shared
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Open follows nothing the host made: every symbolic link, "..", and mount on the way is
// refused, and only paths on the share or a storage are opened at all.
func TestTableOpen(t *testing.T) {
	tb, shared := newTable(t)
	for _, tc := range []struct {
		path string
		want string // "" opens
	}{
		{shared + "/c1/mounts/dir", ""},
		{shared + "/c1/mounts/file", ""},
		{shared, ""},
		{shared + "/c1/mounts/to-root", "symbolic link"},
		{shared + "/c1/mounts/to-images", "symbolic link"},
		{shared + "/c1/mounts/relative", "symbolic link"},
		{shared + "/c1/mounts/staying-in", "symbolic link"},
		{shared + "/c1/mounts/to-other", "symbolic link"},
		{shared + "/c1/mounts/to-proc-env", "symbolic link"},
		{shared + "/linked/file", "symbolic link"},
		{shared + "/mnt", "mount point"},
		{shared + "/c1/../c1/mounts/file", `contains ".."`},
		{shared + "//c1", "not a clean path"},
		{shared + "/missing", "does not exist"},
		{tb.Path(api.ImagesDir) + "/secret", "neither on the pod's share"},
		{tb.Path(api.ContainerRootfs("other")), "neither on the pod's share"},
		{tb.Path(api.SandboxDir), "neither on the pod's share"},
		{tb.Path(api.StorageDir) + "/x", "neither on the pod's share"},
		{"/etc/passwd", "is not below"},
		{"relative/path", "not an absolute path"},
	} {
		f, err := tb.Open(tc.path, "source")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Open(%s): %v", tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Open(%s) = %v, want an error saying %q", tc.path, err, tc.want)
		case tc.want != "" && !errdefs.IsInvalidArgument(err) && !errdefs.IsNotFound(err):
			t.Errorf("Open(%s) = %v, want InvalidArgument or NotFound", tc.path, err)
		}
		if f != nil {
			f.Close()
		}
	}
}

// The host mounts storages only at the share or below the storage directory, never nested,
// never in the agent's own directories; a bind storage's source is opened like any
// host-named path.
func TestTableMount(t *testing.T) {
	tb, shared := newTable(t)
	storage := tb.Path(api.StorageDir)
	for _, tc := range []struct {
		name string
		s    *api.Storage
		want string
	}{
		{"tmpfs on the share", &api.Storage{Driver: api.DriverTmpfs, MountPoint: shared}, "only the pod's virtio-fs share"},
		{"below the share", &api.Storage{Driver: api.DriverTmpfs, MountPoint: shared + "/c1/x"}, "is not below"},
		{"the image cache", &api.Storage{Driver: api.DriverTmpfs, MountPoint: tb.Path(api.ImagesDir)}, "is not below"},
		{"a container's root", &api.Storage{Driver: api.DriverTmpfs, MountPoint: tb.Path(api.ContainerRootfs("c1"))}, "is not below"},
		{"the sandbox's files", &api.Storage{Driver: api.DriverTmpfs, MountPoint: tb.Path(api.SandboxDir)}, "is not below"},
		{"the storage directory itself", &api.Storage{Driver: api.DriverTmpfs, MountPoint: storage}, "is not below"},
		{"outside", &api.Storage{Driver: api.DriverTmpfs, MountPoint: "/etc"}, "is not below"},
		{"unknown driver", &api.Storage{Driver: "nfs", MountPoint: storage + "/x"}, "unknown driver"},
		{"guest pull as a storage", &api.Storage{Driver: api.DriverGuestPull, Source: "r", MountPoint: storage + "/x"}, "only for a container's root"},
		{"bind of a link", &api.Storage{Driver: api.DriverBind, Source: shared + "/c1/mounts/to-images", MountPoint: storage + "/x"}, "symbolic link"},
		{"bind of the cache", &api.Storage{Driver: api.DriverBind, Source: tb.Path(api.ImagesDir), MountPoint: storage + "/x"}, "neither on the pod's share"},
		{"bind across a mount", &api.Storage{Driver: api.DriverBind, Source: shared + "/mnt", MountPoint: storage + "/x"}, "mount point"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			undo, err := tb.Mount(tc.s)
			if err == nil {
				_ = undo()
				t.Fatal("mounted")
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want InvalidArgument saying %q", err, tc.want)
			}
			if mounted(t, tc.s.GetMountPoint()) {
				t.Fatalf("%s mounted", tc.s.GetMountPoint())
			}
		})
	}

	undo, err := tb.Mount(&api.Storage{Driver: api.DriverBind, Source: shared + "/c1/mounts/dir", MountPoint: storage + "/a/b", Options: []string{"ro"}})
	must(t, err)
	if err := os.WriteFile(storage+"/a/b/x", nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a read-only bind storage: %v, want EROFS", err)
	}
	for _, mp := range []string{storage + "/a/b", storage + "/a", storage + "/a/b/c"} {
		if u, err := tb.Mount(&api.Storage{Driver: api.DriverTmpfs, MountPoint: mp}); err == nil {
			_ = u()
			t.Errorf("a storage at %s, at, above or below another, was mounted", mp)
		}
	}
	// A path below a storage opens from the storage, with the same rules.
	if f, err := tb.Open(storage+"/a/b", "source"); err != nil {
		t.Errorf("Open of a storage: %v", err)
	} else {
		f.Close()
	}
	must(t, undo())
	if _, err := os.Stat(storage + "/a/b"); !os.IsNotExist(err) {
		t.Errorf("mount point left after undo: %v", err)
	}
	if _, err := tb.Open(storage+"/a/b", "source"); err == nil {
		t.Error("a path below an unmounted storage still opens")
	}
}
