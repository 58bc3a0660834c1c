package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/storage"
)

// newRootedServer returns a Server whose /run/veil is a temporary directory.
func newRootedServer(t *testing.T) *Server {
	t.Helper()
	s, err := newServer(t.TempDir(), storage.New(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sharedDir is the server's api.SharedDir, created.
func sharedDir(t *testing.T, s *Server) string {
	t.Helper()
	dir := s.paths.Path(api.SharedDir)
	must(t, os.MkdirAll(dir, 0o755))
	return dir
}

func TestCopyFile(t *testing.T) {
	s := newRootedServer(t)
	root := sharedDir(t, s)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	must(t, os.WriteFile(secret, []byte("untouched"), 0o600))
	must(t, os.Mkdir(filepath.Join(root, "dir"), 0o755))
	must(t, os.Symlink(outside, filepath.Join(root, "out")))                   // a link leading out
	must(t, os.Symlink(filepath.Join(root, "dir"), filepath.Join(root, "in"))) // a link staying in
	must(t, os.Symlink(secret, filepath.Join(root, "dir", "link")))            // a link as the file itself

	for _, tc := range []struct {
		name    string
		path    string
		mode    uint32
		parents bool
		want    error // nil: success
	}{
		{"new file with parents", root + "/a/b/c.txt", 0o640, true, nil},
		{"regular type bit", root + "/dir/typed", 0o100600, false, nil},
		{"default mode", root + "/dir/plain", 0, false, nil},
		{"missing parent", root + "/nodir/x", 0, false, errdefs.ErrNotFound},
		{"dot-dot", root + "/dir/../x", 0, true, errdefs.ErrInvalidArgument},
		{"dot-dot out", root + "/../x", 0, true, errdefs.ErrInvalidArgument},
		{"outside the root", secret, 0, false, errdefs.ErrInvalidArgument},
		{"the root itself", root, 0, false, errdefs.ErrInvalidArgument},
		{"relative", "dir/x", 0, false, errdefs.ErrInvalidArgument},
		{"not clean", root + "//dir/x", 0, false, errdefs.ErrInvalidArgument},
		{"symlink leading out", root + "/out/secret", 0, false, errdefs.ErrInvalidArgument},
		{"symlink leading out, parents", root + "/out/new/x", 0, true, errdefs.ErrInvalidArgument},
		{"symlink staying in", root + "/in/x", 0, false, errdefs.ErrInvalidArgument},
		{"symlink as the file", root + "/dir/link", 0, false, errdefs.ErrInvalidArgument},
		{"a directory", root + "/dir", 0, false, errdefs.ErrInvalidArgument},
		{"setuid", root + "/dir/suid", 0o4755, false, errdefs.ErrInvalidArgument},
		{"directory type", root + "/dir/d", 0o40755, false, errdefs.ErrInvalidArgument},
		{"beside the share", s.paths.Root() + "/x", 0, false, errdefs.ErrInvalidArgument},
		{"a guest-pulled root", s.paths.Path(api.ContainerRootfs("c1")) + "/bin/sh", 0, true, errdefs.ErrInvalidArgument},
		{"the image cache", s.paths.Path(api.ImagesDir) + "/x", 0, true, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &api.CopyFileRequest{Path: tc.path, Data: []byte("hello"), Mode: tc.mode, MakeParents: tc.parents}
			_, err := s.CopyFile(context.Background(), req)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("CopyFile(%s) = %v, want %v", tc.path, err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("CopyFile(%s): %v", tc.path, err)
			}
			checkFile(t, tc.path, "hello", wantPerm(tc.mode))
		})
	}
	if b, _ := os.ReadFile(secret); string(b) != "untouched" {
		t.Fatalf("the file outside the root changed: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(outside, "new")); err == nil {
		t.Fatal("a directory was created outside the root")
	}
}

// CopyFile stays on the share's own file system: a mount below the share (whatever put it
// there) is not crossed.
func TestCopyFileStaysOnTheShare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounting a tmpfs needs root: run the tests as root")
	}
	s := newRootedServer(t)
	mnt := filepath.Join(sharedDir(t, s), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	must(t, unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"))
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	for _, p := range []string{mnt + "/x", mnt + "/sub/x"} {
		_, err := s.CopyFile(context.Background(), &api.CopyFileRequest{Path: p, Data: []byte("x"), MakeParents: true})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "mount point") {
			t.Errorf("CopyFile(%s) = %v, want InvalidArgument about a mount point", p, err)
		}
	}
	if ents, _ := os.ReadDir(mnt); len(ents) != 0 {
		t.Fatalf("CopyFile wrote into the mount below the share: %v", ents)
	}
}

func TestCopyFileReplaces(t *testing.T) {
	s := newRootedServer(t)
	shared := sharedDir(t, s)
	path := shared + "/f"
	for _, data := range []string{"first version, longer", "second"} {
		req := &api.CopyFileRequest{Path: path, Data: []byte(data), Mode: 0o600}
		if _, err := s.CopyFile(context.Background(), req); err != nil {
			t.Fatalf("CopyFile: %v", err)
		}
		checkFile(t, path, data, 0o600)
	}
	entries, _ := os.ReadDir(shared)
	if len(entries) != 1 {
		t.Fatalf("root holds %d entries, want only f (no temporary file left)", len(entries))
	}
}

func wantPerm(mode uint32) os.FileMode {
	if p := os.FileMode(mode & 0o777); p != 0 {
		return p
	}
	return defaultFileMode
}

func checkFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != data {
		t.Fatalf("%s holds %q, %v; want %q", path, b, err, data)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != perm {
		t.Fatalf("%s: mode %v, %v; want a regular file with %v", path, fi.Mode(), err, perm)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
