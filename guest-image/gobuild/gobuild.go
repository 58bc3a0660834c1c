// Package gobuild is the one place that says how the guest's Go binaries (veil-agent and
// veil-init) are built, so that `make agent` and `veil-image binaries` (which `veil-image
// verify` runs in a fresh clone) give the same bytes from the same commit in any directory:
// -trimpath (no checkout, GOPATH or module-cache paths), an explicit VCS stamp (vcs.revision,
// vcs.time and vcs.modified from git: the same in every clone of a commit), the commit as the
// agent's version (never `git describe`, which depends on the clone's tags), the Go toolchain
// of the lock file (GOTOOLCHAIN), and a fixed environment (GOOS, GOARCH, GOAMD64, no GOFLAGS
// or GOEXPERIMENT from the caller). Go writes no timestamps into binaries.
package gobuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Module is the repository's Go module path.
const Module = "github.com/veil-runtime/veil"

// VersionVar is the variable the agent reports as its version (the source commit).
const VersionVar = Module + "/agent/server.AgentVersion"

// Binary is one guest binary and how it is built.
type Binary struct {
	// Name is the output file name; Package the main package, relative to the source root.
	Name, Package string
	// Cgo: the agent links runc's nsenter and libseccomp (statically).
	Cgo bool
	// Tags are the build tags.
	Tags []string
	// LDFlags are the linker flags besides the version stamp.
	LDFlags string
}

// Binaries are the guest's binaries: veil-init is /init (small, no cgo), veil-agent the agent
// it starts (one static binary, cgo for runc's nsenter).
var Binaries = []Binary{
	{Name: "veil-agent", Package: "./cmd/veil-agent", Cgo: true, Tags: []string{"netgo", "osusergo", "seccomp"},
		LDFlags: `-s -w -extldflags "-static"`},
	{Name: "veil-init", Package: "./cmd/veil-init", LDFlags: "-s -w"},
}

// Source is the state of a checkout a build starts from.
type Source struct {
	// Dir is the checkout's root.
	Dir string
	// Commit is the full hash of HEAD.
	Commit string
	// Modified: the work tree differs from HEAD (tracked changes or untracked files that are
	// not ignored); such a build is stamped "-dirty" and cannot be reproduced.
	Modified bool
}

// Version is the version stamp: the commit, with "-dirty" when the tree is modified.
func (s Source) Version() string {
	if s.Modified {
		return s.Commit + "-dirty"
	}
	return s.Commit
}

// ReadSource reads the commit and state of the git checkout dir.
func ReadSource(ctx context.Context, dir string) (Source, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Source{}, err
	}
	commit, err := git(ctx, abs, "rev-parse", "HEAD")
	if err != nil {
		return Source{}, fmt.Errorf("source %s is not a git checkout (the guest binaries are stamped with its commit): %w", abs, err)
	}
	status, err := git(ctx, abs, "status", "--porcelain")
	if err != nil {
		return Source{}, err
	}
	return Source{Dir: abs, Commit: commit, Modified: status != ""}, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Args returns the arguments of `go` that build b into out, stamped with version.
func Args(b Binary, version, out string) []string {
	args := []string{"build", "-trimpath", "-buildvcs=true"}
	if len(b.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.Tags, ","))
	}
	return append(args, "-ldflags", strings.TrimSpace("-X "+VersionVar+"="+version+" "+b.LDFlags), "-o", out, b.Package)
}

// Env returns the environment of a build of b with the Go toolchain goVersion (e.g.
// "go1.26.8"; GOTOOLCHAIN makes the go command fetch it from the module proxy when it is not
// the local one): base with the variables that change a build's bytes replaced.
func Env(base []string, b Binary, goVersion string) []string {
	drop := map[string]bool{"GOFLAGS": true, "GOEXPERIMENT": true, "GOOS": true, "GOARCH": true, "GOAMD64": true,
		"CGO_ENABLED": true, "GOTOOLCHAIN": true, "CGO_CFLAGS": true, "CGO_LDFLAGS": true, "CGO_CPPFLAGS": true,
		"CGO_CXXFLAGS": true, "CC": true, "CXX": true, "GO111MODULE": true, "GOWORK": true}
	var env []string
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	cgo := "0"
	if b.Cgo {
		cgo = "1"
	}
	return append(env, "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1", "CGO_ENABLED="+cgo, "GOFLAGS=-mod=readonly",
		"GOTOOLCHAIN="+goVersion, "GOWORK=off")
}

// Build builds every binary of Binaries from src into outDir with the Go toolchain goVersion,
// writing the go command's output to log.
func Build(ctx context.Context, src Source, outDir, goVersion string, log *os.File) error {
	if goVersion == "" {
		return errors.New("gobuild: no Go version given (the lock file's \"go\")")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	out, err := filepath.Abs(outDir)
	if err != nil {
		return err
	}
	for _, b := range Binaries {
		cmd := exec.CommandContext(ctx, "go", Args(b, src.Version(), filepath.Join(out, b.Name))...)
		cmd.Dir = src.Dir
		cmd.Env = Env(os.Environ(), b, goVersion)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s (go %s) in %s: %w", b.Name, strings.Join(Args(b, src.Version(), b.Name), " "), src.Dir, err)
		}
	}
	return nil
}
