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

// emptyDirStorage is the storage the shim sends for volume name (memory: the tmpfs medium).
func emptyDirStorage(tb *Table, name string, memory bool) *api.Storage {
	s := &api.Storage{Driver: api.DriverEmptyDir, Source: name, MountPoint: tb.Path(api.EmptyDirPath(name))}
	if memory {
		s.Fstype = api.EmptyDirMemory
	}
	return s
}

// Two containers that name the same volumes get the same directories (one on the guest's
// file system, one a tmpfs), which outlive the first container.
func TestEmptyDirShared(t *testing.T) {
	tb, shared := newTable(t)
	specFor := func(id string) *specs.Spec {
		must(t, os.MkdirAll(shared+"/"+id+"/rootfs", 0o755))
		s := hostSpec(tb, shared+"/"+id+"/rootfs", tb.Path(api.EmptyDirPath("cache")))
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mem", Type: "bind", Source: tb.Path(api.EmptyDirPath("mem")), Options: []string{"rbind"}})
		return s
	}
	storages := []*api.Storage{emptyDirStorage(tb, "cache", false), emptyDirStorage(tb, "mem", true)}
	s1 := specFor("c1")
	undo1, err := tb.PrepareContainer(context.Background(), "c1", s1, storages)
	must(t, err)
	must(t, os.WriteFile(s1.Mounts[1].Source+"/written-by-c1", []byte("hello"), 0o644))
	must(t, os.WriteFile(s1.Mounts[2].Source+"/in-memory", []byte("ram"), 0o644))
	must(t, undo1())
	checkNothingLeft(t, tb, "c1")

	s2 := specFor("c2")
	undo2, err := tb.PrepareContainer(context.Background(), "c2", s2, storages)
	must(t, err)
	defer func() { must(t, undo2()) }()
	if b, err := os.ReadFile(s2.Mounts[1].Source + "/written-by-c1"); err != nil || string(b) != "hello" {
		t.Errorf("c2 does not see c1's file in the volume: %q, %v", b, err)
	}
	if b, err := os.ReadFile(s2.Mounts[2].Source + "/in-memory"); err != nil || string(b) != "ram" {
		t.Errorf("c2 does not see c1's file in the memory volume: %q, %v", b, err)
	}
	var st unix.Statfs_t
	must(t, unix.Statfs(tb.Path(api.EmptyDirPath("mem")), &st))
	if st.Type != unix.TMPFS_MAGIC {
		t.Errorf("the memory volume is file system type %#x, not tmpfs", st.Type)
	}
	if !mounted(t, tb.Path(api.EmptyDirPath("mem"))) || mounted(t, tb.Path(api.EmptyDirPath("cache"))) {
		t.Error("want a mount on the memory volume only")
	}
	for _, name := range []string{"cache", "mem"} {
		fi, err := os.Stat(tb.Path(api.EmptyDirPath(name)))
		if err != nil || fi.Mode().Perm() != 0o777 {
			t.Errorf("volume %s: %v, %v; want mode 0777", name, fi.Mode(), err)
		}
	}
}

// The storage must name a valid volume at its own path with a known medium; a volume keeps
// its medium; a path in EmptyDirDir that no storage made is not a source.
func TestEmptyDirRefusals(t *testing.T) {
	tb, _ := newTable(t)
	must(t, tb.EmptyDir(emptyDirStorage(tb, "cache", false)))
	bad := func(f func(s *api.Storage)) *api.Storage {
		s := emptyDirStorage(tb, "vol", false)
		f(s)
		return s
	}
	for _, tc := range []struct {
		s    *api.Storage
		want string
		is   error
	}{
		{bad(func(s *api.Storage) { s.Source = "../images" }), `name "../images" contains '/'`, errdefs.ErrInvalidArgument},
		{bad(func(s *api.Storage) { s.Source = ".." }), `contains ".."`, errdefs.ErrInvalidArgument},
		{bad(func(s *api.Storage) { s.Source = "" }), "name is empty", errdefs.ErrInvalidArgument},
		{bad(func(s *api.Storage) { s.Source = strings.Repeat("v", 64) }), "64 bytes long", errdefs.ErrInvalidArgument},
		{bad(func(s *api.Storage) { s.MountPoint = tb.Path(api.ContainersDir) }), "is not the volume's directory", errdefs.ErrInvalidArgument},
		{bad(func(s *api.Storage) { s.Fstype = "ext4" }), `fstype "ext4"`, errdefs.ErrInvalidArgument},
		{bad(func(s *api.Storage) { s.Options = []string{"size=1g"} }), "options [size=1g] are not allowed", errdefs.ErrInvalidArgument},
		{emptyDirStorage(tb, "cache", true), "exists with medium disk, not Memory (tmpfs)", errdefs.ErrFailedPrecondition},
	} {
		err := tb.EmptyDir(tc.s)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
			t.Errorf("%+v: got %v, want %q (%v)", tc.s, err, tc.want, tc.is)
		}
	}
	if _, err := os.Stat(tb.Path(api.EmptyDirPath("vol"))); !os.IsNotExist(err) {
		t.Errorf("a refused storage left its directory: %v", err)
	}
	// Mount (CreateSandbox's storages) takes no emptyDir.
	if _, err := tb.Mount(emptyDirStorage(tb, "other", false)); err == nil || !strings.Contains(err.Error(), "only for a container's storages") {
		t.Errorf("Mount of an emptydir storage: %v", err)
	}
	// A directory below EmptyDirDir that no storage made is no source, nor is EmptyDirDir.
	must(t, os.Mkdir(tb.Path(api.EmptyDirPath("planted")), 0o755))
	for _, p := range []string{tb.Path(api.EmptyDirPath("planted")), tb.Path(api.EmptyDirDir)} {
		if f, err := tb.Open(p, "source"); err == nil || !strings.Contains(err.Error(), "nor in an emptyDir volume of the pod") {
			if f != nil {
				f.Close()
			}
			t.Errorf("Open(%s): %v", p, err)
		}
	}
	// One that a storage made is, and so is a path in it, without a link.
	must(t, os.Symlink("/", tb.Path(api.EmptyDirPath("cache"))+"/link"))
	must(t, os.Mkdir(tb.Path(api.EmptyDirPath("cache"))+"/sub", 0o755))
	for p, ok := range map[string]bool{
		tb.Path(api.EmptyDirPath("cache")): true, tb.Path(api.EmptyDirPath("cache")) + "/sub": true,
		tb.Path(api.EmptyDirPath("cache")) + "/link": false,
	} {
		f, err := tb.Open(p, "source")
		if (err == nil) != ok {
			t.Errorf("Open(%s): %v, want ok=%v", p, err, ok)
		}
		if f != nil {
			f.Close()
		}
	}
}
