package task

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

func TestEmptyDirName(t *testing.T) {
	const pods = "/var/lib/kubelet/pods/0f1e-uid/volumes/"
	for _, tc := range []struct {
		src, name string
		ok        bool
		err       string
	}{
		{pods + "kubernetes.io~empty-dir/cache", "cache", true, ""},
		{pods + "kubernetes.io~empty-dir/cache/", "cache", true, ""}, // cleaned
		{"/tmp/x/pods/u/volumes/kubernetes.io~empty-dir/scratch-1", "scratch-1", true, ""},
		{pods + "kubernetes.io~empty-dir/Cache", "", true, "not a DNS label"},
		{pods + "kubernetes.io~empty-dir/" + strings.Repeat("a", 64), "", true, "64 bytes long"},
		{pods + "kubernetes.io~empty-dir/cache/sub", "", false, ""},          // below a volume: not one
		{pods + "kubernetes.io~empty-dir", "", false, ""},                    // the plugin directory
		{pods + "kubernetes.io~configmap/config", "", false, ""},             // another plugin
		{"/var/lib/kubelet/pods/u/volume-subpaths/cache/c/0", "", false, ""}, // subPath
		{pods + "kubernetes.io~empty-dir-not/cache", "", false, ""},
		{"kubernetes.io~empty-dir/cache", "", false, ""}, // relative
		{"/tmp/shared/cache", "", false, ""},
	} {
		name, ok, err := emptyDirName(tc.src)
		if name != tc.name || ok != tc.ok || (err == nil) != (tc.err == "") ||
			(err != nil && (!strings.Contains(err.Error(), tc.err) || !errors.Is(err, errdefs.ErrInvalidArgument))) {
			t.Errorf("%s: got %q %v %v, want %q %v %q", tc.src, name, ok, err, tc.name, tc.ok, tc.err)
		}
	}
}

// kubeletVolume makes <tmp>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name> as kubelet
// does, with a tmpfs on it for the memory medium.
func kubeletVolume(t *testing.T, name string, memory bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pods", "uid-1", "volumes", api.KubeletEmptyDir, name)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if memory {
		if os.Geteuid() != 0 {
			t.Fatal("mounting a tmpfs needs root: run the test as root")
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	}
	return dir
}

// guestEmptyDirs moves exactly the emptyDir binds, one storage per volume with its medium.
func TestGuestEmptyDirs(t *testing.T) {
	disk, mem := kubeletVolume(t, "cache", false), kubeletVolume(t, "mem", true)
	other := t.TempDir()
	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/cache", Type: "bind", Source: disk, Options: []string{"rbind", "rw"}},
		{Destination: "/other", Type: "bind", Source: other, Options: []string{"rbind"}},
		{Destination: "/mem", Source: mem, Options: []string{"rbind", "ro"}},
		{Destination: "/cache-again", Type: "bind", Source: disk},
	}}
	storages, inGuest, err := guestEmptyDirs(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := []*api.Storage{
		{Driver: api.DriverEmptyDir, Source: "cache", MountPoint: "/run/veil/emptydir/cache"},
		{Driver: api.DriverEmptyDir, Source: "mem", Fstype: api.EmptyDirMemory, MountPoint: "/run/veil/emptydir/mem"},
	}
	if len(storages) != len(want) {
		t.Fatalf("storages %v, want %v", storages, want)
	}
	for i := range want {
		g := storages[i]
		if g.GetDriver() != want[i].Driver || g.GetSource() != want[i].Source || g.GetFstype() != want[i].Fstype ||
			g.GetMountPoint() != want[i].MountPoint || len(g.GetOptions()) != 0 {
			t.Errorf("storages[%d] = %v, want %v", i, g, want[i])
		}
	}
	sources := []string{"proc", "/run/veil/emptydir/cache", other, "/run/veil/emptydir/mem", "/run/veil/emptydir/cache"}
	for i, m := range spec.Mounts {
		if m.Source != sources[i] {
			t.Errorf("mounts[%d].source %s, want %s", i, m.Source, sources[i])
		}
		if inGuest[i] != (i == 1 || i == 3 || i == 4) {
			t.Errorf("mounts[%d] in the guest: %v", i, inGuest[i])
		}
	}
	if spec.Mounts[3].Options[1] != "ro" {
		t.Error("the options changed")
	}
	if note := emptyDirNote(storages); note != "emptyDir volumes kept in the guest, not shared from the host: cache, mem (memory)" {
		t.Errorf("note %q", note)
	}
}

func TestGuestEmptyDirsRefused(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "pods/u/volumes", api.KubeletEmptyDir, "gone")
	bad := filepath.Join(t.TempDir(), "pods/u/volumes", api.KubeletEmptyDir, "..")
	badName := filepath.Join(t.TempDir(), "pods/u/volumes", api.KubeletEmptyDir, "Bad_Name")
	for src, want := range map[string]string{
		missing: "emptyDir source " + missing + ": statfs: no such file or directory",
		badName: "emptyDir source " + badName + `: emptyDir volume name "Bad_Name" is not a DNS label`,
	} {
		spec := &specs.Spec{Mounts: []specs.Mount{{Destination: "/v", Type: "bind", Source: src}}}
		if _, _, err := guestEmptyDirs(spec); err == nil || !strings.Contains(err.Error(), "mount /v: "+want) {
			t.Errorf("%s: got %v, want %q", src, err, want)
		}
	}
	// ".." cleans to another directory, which is no emptyDir volume: left to be shared.
	spec := &specs.Spec{Mounts: []specs.Mount{{Destination: "/v", Type: "bind", Source: bad}}}
	if s, _, err := guestEmptyDirs(spec); err != nil || len(s) != 0 {
		t.Errorf("%s: %v, %v", bad, s, err)
	}
}
