package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/veil-runtime/veil/guest-image/manifest"
)

// FormatVersion is the version of how this package builds. It is part of the cache key:
// raise it whenever a change here changes the kernel built from the same inputs.
const FormatVersion = 1

// ImageFile, ConfigFile and RecordFile are the files of a cache entry.
const (
	ImageFile  = "bzImage"
	ConfigFile = "config"
	RecordFile = "build.json"
)

// BuildOptions say what to build.
type BuildOptions struct {
	// SourceDeb is the path of the kernel source package (linux-source-6.12_….deb), and
	// SourceSHA256 its hex SHA-256 (as locked and checked by the caller).
	SourceDeb, SourceSHA256 string
	// Fragment is the config fragment (Fragment); FragmentName names it in errors.
	Fragment     []byte
	FragmentName string
	// CacheDir holds the cache entries (CacheDir/<key>/) and, while building, the work tree.
	CacheDir string
	// Jobs is make's -j; 0 means the number of CPUs.
	Jobs int
	// Progress receives one line per step and the build's output; nil discards them.
	Progress io.Writer
}

// Inputs are everything the built kernel depends on; their digest is the cache key.
type Inputs struct {
	FormatVersion  int    `json:"formatVersion"`
	SourceSHA256   string `json:"sourceSHA256"`
	FragmentSHA256 string `json:"fragmentSHA256"`
	// Compiler and Linker are the first lines of `gcc --version` and `ld --version`.
	Compiler string `json:"compiler"`
	Linker   string `json:"linker"`
	// Env are the fixed KBUILD_* settings other than the timestamp (which comes from the
	// source package, so its digest covers it).
	Env []string `json:"env"`
}

// Key returns the hex SHA-256 of the inputs' JSON encoding.
func (in Inputs) Key() string {
	b, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("encoding kernel build inputs: %v", err)) // strings and ints: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Result describes a built kernel; it is the cache entry's build.json.
type Result struct {
	Key    string `json:"key"`
	Inputs Inputs `json:"inputs"`
	// Release is the kernel's release (uname -r), e.g. 6.12.95-veil.
	Release string `json:"release"`
	// ConfigSHA256 is the hex SHA-256 of the final .config.
	ConfigSHA256 string `json:"configSHA256"`
	// ImageSHA256 and ImageSize describe the bzImage.
	ImageSHA256 string `json:"imageSHA256"`
	ImageSize   int64  `json:"imageSize"`
	// BuildSeconds is how long the build took (extraction, configuration and compilation),
	// and Jobs make's -j: for the record, not part of the kernel.
	BuildSeconds float64 `json:"buildSeconds"`
	Jobs         int     `json:"jobs"`

	dir string
}

// Image is the path of the cached bzImage.
func (r *Result) Image() string { return filepath.Join(r.dir, ImageFile) }

// Config is the path of the cached .config.
func (r *Result) Config() string { return filepath.Join(r.dir, ConfigFile) }

// buildEnv are the fixed settings of a reproducible build (the kernel's
// Documentation/kbuild/reproducible-builds.rst), except the timestamp.
var buildEnv = []string{"KBUILD_BUILD_USER=veil", "KBUILD_BUILD_HOST=veil", "KBUILD_BUILD_VERSION=1", "LC_ALL=C", "TZ=UTC"}

// ToolVersions returns the first lines of `gcc --version` and `ld --version`.
func ToolVersions(ctx context.Context) (compiler, linker string, err error) {
	first := func(tool string) (string, error) {
		out, err := exec.CommandContext(ctx, tool, "--version").Output()
		if err != nil {
			return "", fmt.Errorf("%s --version (building the veil kernel needs gcc and binutils: scripts/install-deps.sh): %w", tool, err)
		}
		line, _, _ := strings.Cut(string(out), "\n")
		return strings.TrimSpace(line), nil
	}
	if compiler, err = first("gcc"); err != nil {
		return "", "", err
	}
	linker, err = first("ld")
	return compiler, linker, err
}

// NewInputs returns the inputs of a build of o.
func NewInputs(ctx context.Context, o BuildOptions) (Inputs, error) {
	if _, err := ParseConfig(o.Fragment, o.fragmentName()); err != nil {
		return Inputs{}, err
	}
	cc, ld, err := ToolVersions(ctx)
	if err != nil {
		return Inputs{}, err
	}
	sum := sha256.Sum256(o.Fragment)
	return Inputs{FormatVersion: FormatVersion, SourceSHA256: o.SourceSHA256, FragmentSHA256: hex.EncodeToString(sum[:]),
		Compiler: cc, Linker: ld, Env: buildEnv}, nil
}

func (o BuildOptions) fragmentName() string {
	if o.FragmentName == "" {
		return FragmentFile
	}
	return o.FragmentName
}

// Cached returns the cache entry of inputs when it is complete and its bzImage matches its
// record.
func Cached(cacheDir string, in Inputs) (*Result, bool) {
	key := in.Key()
	dir := filepath.Join(cacheDir, key)
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if err != nil {
		return nil, false
	}
	var r Result
	if json.Unmarshal(b, &r) != nil || r.Key != key {
		return nil, false
	}
	r.dir = dir
	if a, err := manifest.DescribeFile(dir, ImageFile); err != nil || a.SHA256 != r.ImageSHA256 || a.Size != r.ImageSize {
		return nil, false
	}
	return &r, true
}

// Build returns the cached kernel of o's inputs, or builds it: it extracts the source
// tarball from the package into a work tree under CacheDir, configures it (Configure), runs
// make bzImage and stores the bzImage, the .config and the record as CacheDir/<key>/. The
// work tree is removed on every path.
func Build(ctx context.Context, o BuildOptions) (*Result, bool, error) {
	in, err := NewInputs(ctx, o)
	if err != nil {
		return nil, false, err
	}
	if r, ok := Cached(o.CacheDir, in); ok {
		return r, true, nil
	}
	out := o.Progress
	if out == nil {
		out = io.Discard
	}
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	start := time.Now()
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, false, fmt.Errorf("creating kernel cache: %w", err)
	}
	work, err := os.MkdirTemp(o.CacheDir, ".work-")
	if err != nil {
		return nil, false, fmt.Errorf("creating kernel work tree: %w", err)
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(out, "extracting the kernel source from %s\n", filepath.Base(o.SourceDeb))
	src, stamp, err := extractSource(ctx, o.SourceDeb, work)
	if err != nil {
		return nil, false, err
	}
	env := append(os.Environ(), buildEnv...)
	env = append(env, "KBUILD_BUILD_TIMESTAMP="+stamp.UTC().Format(time.UnixDate))
	mk := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "make", append([]string{"-C", src}, args...)...)
		cmd.Env = env
		// make runs a tree of processes: on cancellation end them all (their own process
		// group), and do not wait for the pipes of any that linger.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		return cmd
	}
	fmt.Fprintf(out, "configuring: allnoconfig + %s + olddefconfig\n", o.fragmentName())
	config, err := Configure(ctx, src, o.Fragment, o.fragmentName(), mk)
	if err != nil {
		return nil, false, err
	}
	logFile := filepath.Join(o.CacheDir, in.Key()+".log")
	fmt.Fprintf(out, "make -j%d bzImage (KBUILD_BUILD_TIMESTAMP %s), output in %s\n", jobs, stamp.UTC().Format(time.UnixDate), logFile)
	log, err := os.Create(logFile)
	if err != nil {
		return nil, false, fmt.Errorf("creating the kernel build log: %w", err)
	}
	defer log.Close()
	cmd := mk(fmt.Sprintf("-j%d", jobs), "bzImage")
	var tail tailBuffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(log, &tail), io.MultiWriter(log, &tail)
	if err := cmd.Run(); err != nil {
		return nil, false, fmt.Errorf("make bzImage in %s: %w; last output (all of it in %s):\n%s", src, err, logFile, tail.String())
	}
	rel, err := mk("-s", "kernelrelease").Output()
	if err != nil {
		return nil, false, fmt.Errorf("make kernelrelease: %w", err)
	}
	r := &Result{Key: in.Key(), Inputs: in, Release: strings.TrimSpace(string(rel)), ConfigSHA256: sha256Hex(config),
		BuildSeconds: time.Since(start).Seconds(), Jobs: jobs}
	if err := store(o.CacheDir, r, filepath.Join(src, "arch/x86/boot/bzImage"), config); err != nil {
		return nil, false, err
	}
	return r, false, nil
}

// Configure makes src's .config: make allnoconfig, the fragment applied over it, make
// olddefconfig, then Check. mk runs make in src. It returns the final .config.
func Configure(ctx context.Context, src string, fragment []byte, fragmentName string, mk func(args ...string) *exec.Cmd) ([]byte, error) {
	opts, err := ParseConfig(fragment, fragmentName)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(src, ".config")
	if out, err := mk("allnoconfig").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("make allnoconfig: %w: %s", err, out)
	}
	base, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, Apply(base, opts), 0o644); err != nil {
		return nil, err
	}
	if out, err := mk("olddefconfig").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("make olddefconfig: %w: %s", err, out)
	}
	config, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if err := Check(opts, config, fragmentName); err != nil {
		return nil, err
	}
	return config, nil
}

// extractSource unpacks usr/src/linux-source-*.tar.xz from the .deb into work and the tree
// from it; it returns the tree's directory and the tarball's modification time (the source
// package's build date: Debian builds with SOURCE_DATE_EPOCH, the changelog's date).
func extractSource(ctx context.Context, deb, work string) (string, time.Time, error) {
	script := `set -eo pipefail; dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './usr/src/linux-source-*.tar.xz'`
	if out, err := exec.CommandContext(ctx, "bash", "-c", script, "extract", deb, work).CombinedOutput(); err != nil {
		return "", time.Time{}, fmt.Errorf("extracting the source tarball from %s: %w: %s", deb, err, out)
	}
	tarballs, _ := filepath.Glob(filepath.Join(work, "usr/src/linux-source-*.tar.xz"))
	if len(tarballs) != 1 {
		return "", time.Time{}, fmt.Errorf("%s: want one usr/src/linux-source-*.tar.xz, found %d", deb, len(tarballs))
	}
	fi, err := os.Stat(tarballs[0])
	if err != nil {
		return "", time.Time{}, err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xJf", tarballs[0], "-C", work).CombinedOutput(); err != nil {
		return "", time.Time{}, fmt.Errorf("extracting %s: %w: %s", filepath.Base(tarballs[0]), err, out)
	}
	os.Remove(tarballs[0])
	src := strings.TrimSuffix(filepath.Join(work, filepath.Base(tarballs[0])), ".tar.xz")
	if _, err := os.Stat(filepath.Join(src, "Makefile")); err != nil {
		return "", time.Time{}, fmt.Errorf("%s: no kernel tree %s in its tarball: %w", deb, filepath.Base(src), err)
	}
	return src, fi.ModTime(), nil
}

// store writes the cache entry CacheDir/<key>/ through a temporary directory and a rename.
func store(cacheDir string, r *Result, image string, config []byte) error {
	data, err := os.ReadFile(image)
	if err != nil {
		return fmt.Errorf("reading the built kernel: %w", err)
	}
	r.ImageSHA256, r.ImageSize = sha256Hex(data), int64(len(data))
	tmp, err := os.MkdirTemp(cacheDir, ".entry-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rec, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{ImageFile: data, ConfigFile: config, RecordFile: append(rec, '\n')} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return fmt.Errorf("storing the kernel: %w", err)
		}
	}
	dir := filepath.Join(cacheDir, r.Key)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("storing the kernel: %w", err)
	}
	r.dir = dir
	return nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// tailBuffer keeps the last 4 KiB written to it, for an error message.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(bytes.TrimSpace(t.b)) }
