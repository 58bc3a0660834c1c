package gobuild

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	for _, b := range Binaries {
		args := Args(b, "abc", "/out/"+b.Name)
		for _, want := range []string{"-trimpath", "-buildvcs=false"} {
			if !slices.Contains(args, want) {
				t.Errorf("%s: %q lacks %s", b.Name, args, want)
			}
		}
		i := slices.Index(args, "-ldflags")
		if i < 0 || !strings.Contains(args[i+1], "-X "+VersionVar+"=abc") {
			t.Errorf("%s: %q does not stamp the version", b.Name, args)
		}
		if args[len(args)-1] != b.Package {
			t.Errorf("%s: %q does not end in the package", b.Name, args)
		}
	}
}

// TestEnv: the caller's settings that change a build's bytes do not reach it.
func TestEnv(t *testing.T) {
	base := []string{"HOME=/h", "GOFLAGS=-buildvcs=true -ldflags=-X=a.b=c", "GOEXPERIMENT=x", "GOAMD64=v3", "CC=clang",
		"CGO_CFLAGS=-g -O0", "GOTOOLCHAIN=local", "PATH=/bin"}
	env := Env(base, Binaries[0], "go1.26.8")
	for _, want := range []string{"HOME=/h", "PATH=/bin", "GOAMD64=v1", "CGO_ENABLED=1", "GOTOOLCHAIN=go1.26.8", "GOFLAGS=-mod=readonly", "GOOS=linux"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %q lacks %s", env, want)
		}
	}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "GOEXPERIMENT" || k == "CC" || k == "CGO_CFLAGS" || strings.Contains(kv, "buildvcs=true") {
			t.Errorf("env keeps %s", kv)
		}
	}
	if !slices.Contains(Env(base, Binaries[1], "go1.26.8"), "CGO_ENABLED=0") {
		t.Errorf("veil-init is built with cgo: %q", Env(base, Binaries[1], "go1.26.8"))
	}
}

func TestVersion(t *testing.T) {
	if v := (Source{Commit: "c0ffee", Modified: true}).Version(); v != "c0ffee-dirty" {
		t.Errorf("Version = %q", v)
	}
	if v := (Source{Commit: "c0ffee"}).Version(); v != "c0ffee" {
		t.Errorf("Version = %q", v)
	}
}

// TestReadSource: a clean clone is unmodified; a change, tracked or untracked, marks it
// modified; a directory outside git is an error that says why the commit is needed.
func TestReadSource(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, out)
		}
	}
	if _, err := ReadSource(ctx, dir); err == nil || !strings.Contains(err.Error(), "not a git checkout") {
		t.Errorf("ReadSource outside git = %v", err)
	}
	run("init", "-q")
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("add", "a")
	run("commit", "-qm", "a")
	s, err := ReadSource(ctx, dir)
	if err != nil || len(s.Commit) != 40 || s.Modified {
		t.Fatalf("ReadSource = %+v, %v", s, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err = ReadSource(ctx, dir); err != nil || !s.Modified || s.Version() != s.Commit+DirtySuffix {
		t.Errorf("with an untracked file: %+v, %v, want modified", s, err)
	}
}
