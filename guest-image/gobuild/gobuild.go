// Package gobuild is the one place that says how the guest's Go binaries (veil-agent and
// veil-init) are built, so that `make agent` and `veil-image binaries` (which `veil-image
// verify` runs in a fresh clone) give the same bytes from the same commit in any directory:
// -trimpath (no checkout, GOPATH or module-cache paths), -buildvcs=false and instead a stamp of
// our own, the commit (with "-dirty" for a modified tree) as the agent's version through
// -ldflags -X (never `git describe`, which depends on the clone's tags; Go's own VCS stamp is
// not used: Go does not see git worktrees, where .git is a file, and silently leaves it out),
// the Go toolchain of the lock file (GOTOOLCHAIN), and a fixed environment (GOOS, GOARCH,
// GOAMD64, no GOFLAGS or GOEXPERIMENT from the caller). Go writes no timestamps into binaries.
//
// Build writes a record next to the binaries (RecordFile: the commit, the toolchain and each
// binary's SHA-256), from which the image builder takes the source commit for the manifest (Go
// leaves -ldflags out of a -trimpath binary's build information).
package gobuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// DirtySuffix ends the version stamp of a build from a modified tree.
const DirtySuffix = "-dirty"

// Version is the version stamp: the commit, with DirtySuffix when the tree is modified.
func (s Source) Version() string {
	if s.Modified {
		return s.Commit + DirtySuffix
	}
	return s.Commit
}

// RecordFile is the name of the build record Build writes next to the binaries.
const RecordFile = "veil-guest-binaries.json"

// Record says what Build built: read by the image builder (ReadRecord) for the manifest.
type Record struct {
	// Commit and Modified are the source's (Source).
	Commit   string `json:"commit"`
	Modified bool   `json:"modified"`
	// Go is the toolchain (GOTOOLCHAIN).
	Go string `json:"go"`
	// CC is the first line of `$CC --version`: the agent's cgo parts and static libraries
	// (libc, libseccomp) come from the host's C toolchain, which the lock does not pin.
	CC string `json:"cc,omitempty"`
	// SHA256 maps each binary's name to its hex SHA-256.
	SHA256 map[string]string `json:"sha256"`
}

// ReadRecord reads dir/RecordFile; it returns nil (no error) when there is none.
func ReadRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, RecordFile), err)
	}
	return &r, nil
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
	args := []string{"build", "-trimpath", "-buildvcs=false"}
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
	// The old record goes first: a failed build leaves none that claims its binaries.
	if err := os.Remove(filepath.Join(out, RecordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	rec := Record{Commit: src.Commit, Modified: src.Modified, Go: goVersion, CC: ccVersion(ctx, src.Dir, goVersion), SHA256: map[string]string{}}
	for _, b := range Binaries {
		file := filepath.Join(out, b.Name)
		cmd := exec.CommandContext(ctx, "go", Args(b, src.Version(), file)...)
		cmd.Dir = src.Dir
		cmd.Env = Env(os.Environ(), b, goVersion)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s (go %s) in %s: %w", b.Name, strings.Join(Args(b, src.Version(), b.Name), " "), src.Dir, err)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		rec.SHA256[b.Name] = hex.EncodeToString(sum[:])
	}
	j, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, RecordFile), append(j, '\n'), 0o644)
}

// ccVersion is the first line of the --version of the C compiler a cgo build of Env uses
// ("" when there is none).
func ccVersion(ctx context.Context, dir, goVersion string) string {
	cmd := exec.CommandContext(ctx, "go", "env", "CC")
	cmd.Dir = dir
	cmd.Env = Env(os.Environ(), Binary{Cgo: true}, goVersion)
	cc, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(cc)) == "" {
		return ""
	}
	out, err := exec.CommandContext(ctx, strings.Fields(string(cc))[0], "--version").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}
