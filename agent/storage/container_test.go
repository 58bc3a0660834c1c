package storage

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// hostSpec is a spec whose root and one volume the host shares from the share.
func hostSpec(tb *Table, root, volume string) *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Args: []string{"sh"}},
		Root:    &specs.Root{Path: root},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: volume, Options: []string{"rbind", "rw"}},
		},
	}
}

// checkNothingLeft fails unless container id's directory and every mount below it are gone.
func checkNothingLeft(t *testing.T, tb *Table, id string) {
	t.Helper()
	dir := tb.Path(api.ContainersDir) + "/" + id
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind (err %v)", dir, err)
	}
}

func TestPrepareContainerHostRoot(t *testing.T) {
	tb, shared := newTable(t)
	must(t, os.MkdirAll(shared+"/c1/rootfs/bin", 0o755))
	must(t, os.WriteFile(shared+"/c1/rootfs/bin/app", []byte("app"), 0o755))
	spec := hostSpec(tb, shared+"/c1/rootfs", shared+"/c1/mounts/dir")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: shared + "/c1/mounts/file"})
	undo, err := tb.PrepareContainer(context.Background(), "c1", spec, nil)
	must(t, err)
	rootfs := tb.Path(api.ContainerRootfs("c1"))
	if spec.Root.Path != rootfs {
		t.Errorf("root.path %s, want %s", spec.Root.Path, rootfs)
	}
	if b, err := os.ReadFile(rootfs + "/bin/app"); err != nil || string(b) != "app" {
		t.Errorf("the bound root: %q, %v", b, err)
	}
	dir := tb.Path(api.ContainersDir) + "/c1/mounts/"
	if spec.Mounts[0].Source != "proc" || spec.Mounts[1].Source != dir+"1" || spec.Mounts[2].Source != dir+"2" {
		t.Errorf("mount sources %q %q %q", spec.Mounts[0].Source, spec.Mounts[1].Source, spec.Mounts[2].Source)
	}
	if b, err := os.ReadFile(dir + "2"); err != nil || string(b) != "volume" {
		t.Errorf("the staged file: %q, %v", b, err)
	}
	must(t, undo())
	checkNothingLeft(t, tb, "c1")
	if b, err := os.ReadFile(shared + "/c1/mounts/file"); err != nil || string(b) != "volume" {
		t.Errorf("undo touched the host's file: %q, %v", b, err)
	}
}

// A root or source that leads anywhere but the share is refused, and nothing stays mounted.
func TestPrepareContainerRefusals(t *testing.T) {
	tb, shared := newTable(t)
	must(t, os.MkdirAll(shared+"/c1/rootfs", 0o755))
	must(t, os.Symlink("/", shared+"/c1/linked-root"))
	root := tb.Path(api.ContainerRootfs("c1"))
	digest := "sha256:" + strings.Repeat("0f", 32)
	pull := func(mp string) *api.Storage {
		return &api.Storage{Driver: api.DriverGuestPull, Source: "registry.example/app:1", MountPoint: mp}
	}
	pinned := func(s *specs.Spec) *specs.Spec {
		s.Annotations = map[string]string{api.ImageDigestAnnotation: digest}
		return s
	}
	for _, tc := range []struct {
		name     string
		spec     *specs.Spec
		storages []*api.Storage
		want     string
	}{
		{"root is a host link to /", hostSpec(tb, shared+"/c1/linked-root", shared+"/c1/mounts/dir"), nil, "symbolic link"},
		{"root beside the share", hostSpec(tb, tb.Path(api.ContainerRootfs("other")), shared+"/c1/mounts/dir"), nil, "neither on the pod's share"},
		{"volume is a link to /", hostSpec(tb, shared+"/c1/rootfs", shared+"/c1/mounts/to-root"), nil, "symbolic link"},
		{"volume is another container's root", hostSpec(tb, shared+"/c1/rootfs", tb.Path(api.ContainerRootfs("other"))), nil, "neither on the pod's share"},
		{"volume in the image cache", hostSpec(tb, shared+"/c1/rootfs", tb.Path(api.ImagesDir)), nil, "neither on the pod's share"},
		{"volume across a mount", hostSpec(tb, shared+"/c1/rootfs", shared+"/mnt"), nil, "mount point"},
		{"overlay mount", func() *specs.Spec {
			s := hostSpec(tb, shared+"/c1/rootfs", shared+"/c1/mounts/dir")
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/"}})
			return s
		}(), nil, `mount type "overlay" is not allowed`},
		{"pulled root elsewhere", pinned(hostSpec(tb, shared+"/c1/rootfs", shared+"/c1/mounts/dir")),
			[]*api.Storage{pull(shared + "/c1/rootfs")}, "is not the container's root"},
		{"root.path is not the pulled root", pinned(hostSpec(tb, shared+"/c1/rootfs", shared+"/c1/mounts/dir")),
			[]*api.Storage{pull(root)}, "is not the image_guest_pull storage's mount point"},
		{"two roots", pinned(hostSpec(tb, root, shared+"/c1/mounts/dir")),
			[]*api.Storage{pull(root), {Driver: api.DriverPause, MountPoint: root}}, "a second root file system"},
		{"storage below the share", hostSpec(tb, shared+"/c1/rootfs", shared+"/c1/mounts/dir"),
			[]*api.Storage{{Driver: api.DriverTmpfs, MountPoint: shared + "/c1/rootfs/bin"}}, "is not below"},
		{"no digest", hostSpec(tb, root, shared+"/c1/mounts/dir"), []*api.Storage{pull(root)}, "io.veil.image.digest is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.Pull = &GuestPull{Dir: tb.Path(api.ImagesDir)}
			undo, err := tb.PrepareContainer(context.Background(), "c1", tc.spec, tc.storages)
			if err == nil {
				_ = undo()
				t.Fatal("prepared")
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want InvalidArgument saying %q", err, tc.want)
			}
			checkNothingLeft(t, tb, "c1")
		})
	}
	tb.Pull = nil
	spec := pinned(hostSpec(tb, root, shared+"/c1/mounts/dir"))
	if _, err := tb.PrepareContainer(context.Background(), "c1", spec, []*api.Storage{pull(root)}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("guest pull without image pull configured: %v, want FailedPrecondition", err)
	}
	checkNothingLeft(t, tb, "c1")
}

// The pause bundle holds the guest's pause program, read-only, and nothing else of anyone's.
func TestPrepareContainerPause(t *testing.T) {
	tb, shared := newTable(t)
	bin := t.TempDir() + "/pause-program"
	must(t, os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755))
	tb.PauseBinary = bin
	root := tb.Path(api.ContainerRootfs("sb"))
	pause := func(args []string, ro bool) *specs.Spec {
		return &specs.Spec{Process: &specs.Process{Args: args}, Root: &specs.Root{Path: root, Readonly: ro},
			Mounts: []specs.Mount{{Destination: "/dev/shm", Type: "bind", Source: shared + "/c1/mounts/dir"}}}
	}
	storages := []*api.Storage{{Driver: api.DriverPause, MountPoint: root}}
	for _, tc := range []struct {
		spec *specs.Spec
		want string
	}{
		{pause([]string{"/bin/sh"}, true), "runs only /pause"},
		{pause([]string{"/pause", "-x"}, true), "runs only /pause"},
		{pause([]string{"/pause"}, false), "must be read-only"},
	} {
		if undo, err := tb.PrepareContainer(context.Background(), "sb", tc.spec, storages); err == nil {
			_ = undo()
			t.Errorf("%v: prepared", tc.spec.Process.Args)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.spec.Process.Args, err, tc.want)
		}
		checkNothingLeft(t, tb, "sb")
	}
	undo, err := tb.PrepareContainer(context.Background(), "sb", pause([]string{"/pause"}, true), storages)
	must(t, err)
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 || ents[0].Name() != "pause" {
		t.Errorf("the pause bundle holds %v, want only pause", ents)
	}
	if b, err := os.ReadFile(root + "/pause"); err != nil || string(b) != "#!/bin/sh\n" {
		t.Errorf("pause: %q, %v", b, err)
	}
	if err := os.WriteFile(root+"/pause", []byte("host code"), 0o755); !errors.Is(err, unix.EROFS) {
		t.Errorf("write over the pause program: %v, want EROFS", err)
	}
	must(t, undo())
	checkNothingLeft(t, tb, "sb")
	if b, _ := os.ReadFile(bin); string(b) != "#!/bin/sh\n" {
		t.Errorf("the pause program changed: %q", b)
	}
}

// A container id whose directory exists is refused without touching it.
func TestPrepareContainerExists(t *testing.T) {
	tb, shared := newTable(t)
	must(t, os.MkdirAll(shared+"/c1/rootfs", 0o755))
	dir := tb.Path(api.ContainersDir) + "/c1"
	must(t, os.MkdirAll(dir, 0o755))
	_, err := tb.PrepareContainer(context.Background(), "c1", hostSpec(tb, shared+"/c1/rootfs", shared+"/c1/mounts/dir"), nil)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("error %v, want AlreadyExists", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the existing directory was removed: %v", err)
	}
}
