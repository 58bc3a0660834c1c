// Package debian fetches Debian packages through a private apt set-up and
// unpacks them without installing them.
//
// Everything apt keeps lives under the fetcher's directory: its own
// sources.list (one suite, such as bookworm-backports, of a mirror the host
// already uses), package lists, status file and download cache. The host's
// apt configuration and state are never changed; only the host's archive
// keyring is read, so apt still checks the signed indexes.
package debian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// DefaultKeyring is Debian's archive keyring, from the debian-archive-keyring
// package.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// ErrNoPackage is returned when no package matches a name or pattern.
var ErrNoPackage = errors.New("no matching Debian package")

// Fetcher runs apt-get and apt-cache against a private apt state directory.
type Fetcher struct {
	// Dir holds the apt state (sources.list, lists/, status, cache/). Required.
	Dir string
	// Mirror is the archive URI; empty means the host's (HostMirror("/etc/apt")).
	Mirror string
	// Suite is the one suite fetched, e.g. "bookworm-backports". Required.
	Suite string
	// Arch is the Debian architecture; empty means "amd64".
	Arch string
	// Keyring verifies the archive's signatures; empty means DefaultKeyring.
	Keyring string
	// Progress receives apt's output; nil discards it.
	Progress io.Writer
}

// Package is one version of a binary package as the archive index lists it.
type Package struct {
	Name     string
	Version  string
	Arch     string
	SHA256   string // of the .deb, from the signed index
	Size     int64  // of the .deb, in bytes
	Filename string // path in the archive's pool
}

// String returns "name=version".
func (p *Package) String() string { return p.Name + "=" + p.Version }

// Update writes the private sources.list and runs "apt-get update". When the
// update fails but package lists from an earlier one exist, it reports the
// failure on Progress and goes on with the old lists, so builds work offline
// once the cache is warm.
func (f *Fetcher) Update(ctx context.Context) error {
	if f.Dir == "" || f.Suite == "" {
		return errors.New("debian fetcher: Dir and Suite are required")
	}
	if _, err := os.Stat(f.keyring()); err != nil {
		return fmt.Errorf("archive keyring (apt-get install debian-archive-keyring): %w", err)
	}
	if err := f.setup(); err != nil {
		return err
	}
	_, err := f.run(ctx, "", "apt-get", "update")
	if err == nil {
		return nil
	}
	if f.haveLists() {
		fmt.Fprintf(f.progress(), "warning: apt-get update failed, using the package lists from an earlier update: %v\n", err)
		return nil
	}
	return err
}

// setup creates the directory layout and the sources.list.
func (f *Fetcher) setup() error {
	for _, d := range []string{"lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"} {
		if err := os.MkdirAll(filepath.Join(f.Dir, d), 0o755); err != nil {
			return fmt.Errorf("creating apt state directory: %w", err)
		}
	}
	status := filepath.Join(f.Dir, "status")
	if _, err := os.Stat(status); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(status, nil, 0o644); err != nil {
			return fmt.Errorf("creating apt status file: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.Dir, "sources.list"), []byte(f.SourcesLine()+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing private sources.list: %w", err)
	}
	return nil
}

// SourcesLine returns the one line of the private sources.list.
func (f *Fetcher) SourcesLine() string {
	return fmt.Sprintf("deb [arch=%s signed-by=%s] %s %s main", f.arch(), f.keyring(), f.mirror(), f.Suite)
}

// haveLists reports whether an earlier update left package lists.
func (f *Fetcher) haveLists() bool {
	m, _ := filepath.Glob(filepath.Join(f.Dir, "lists", "*_Packages*"))
	return len(m) > 0
}

// Latest returns the newest version of all packages whose names match
// pattern (an extended regular expression that apt and Go both accept).
func (f *Fetcher) Latest(ctx context.Context, pattern string) (*Package, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("package name pattern %q: %w", pattern, err)
	}
	out, err := f.run(ctx, "", "apt-cache", "search", "--names-only", pattern)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(line, " "); re.MatchString(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: none named like %s in %s %s", ErrNoPackage, pattern, f.mirror(), f.Suite)
	}
	return f.newest(ctx, names, "")
}

// Find returns the package name at version, or at its newest version when
// version is empty.
func (f *Fetcher) Find(ctx context.Context, name, version string) (*Package, error) {
	return f.newest(ctx, []string{name}, version)
}

// newest reads the index records of names and returns the newest one (or
// the one at version).
func (f *Fetcher) newest(ctx context.Context, names []string, version string) (*Package, error) {
	out, err := f.run(ctx, "", "apt-cache", append([]string{"show", "--"}, names...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoPackage, strings.Join(names, " "), err)
	}
	var best *Package
	for _, p := range parseRecords(out) {
		if p.Arch != f.arch() && p.Arch != "all" || version != "" && p.Version != version {
			continue
		}
		if best == nil || CompareVersions(p.Version, best.Version) > 0 {
			best = p
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: %s version %q not in %s %s", ErrNoPackage, strings.Join(names, " "), version, f.mirror(), f.Suite)
	}
	if best.SHA256 == "" || best.Filename == "" {
		return nil, fmt.Errorf("index record of %s has no SHA256 or Filename", best)
	}
	return best, nil
}

// parseRecords parses apt-cache show output: stanzas of "Field: value".
func parseRecords(out []byte) []*Package {
	var pkgs []*Package
	for _, stanza := range strings.Split(string(out), "\n\n") {
		p := &Package{}
		for _, line := range strings.Split(stanza, "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if !ok || strings.HasPrefix(line, " ") {
				continue
			}
			switch k {
			case "Package":
				p.Name = v
			case "Version":
				p.Version = v
			case "Architecture":
				p.Arch = v
			case "SHA256":
				p.SHA256 = v
			case "Filename":
				p.Filename = v
			case "Size":
				p.Size, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if p.Name != "" && p.Version != "" {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

// run runs an apt command with the private configuration, copying its
// output to Progress and returning its standard output.
func (f *Fetcher) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	bin, err := exec.LookPath(tool)
	if err != nil {
		return nil, fmt.Errorf("%s not found (apt-get install apt): %w", tool, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(f.aptOptions(), args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&stderr, f.progress())
	if tool == "apt-get" {
		cmd.Stdout = io.MultiWriter(&stdout, f.progress())
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", tool, args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// aptOptions point apt at the private state instead of the host's.
func (f *Fetcher) aptOptions() []string {
	opts := map[string]string{
		"Dir::Etc::SourceList":       filepath.Join(f.Dir, "sources.list"),
		"Dir::Etc::SourceParts":      filepath.Join(f.Dir, "sources.list.d"),
		"Dir::Etc::Preferences":      filepath.Join(f.Dir, "preferences"),
		"Dir::Etc::PreferencesParts": filepath.Join(f.Dir, "preferences.d"),
		"Dir::State::Lists":          filepath.Join(f.Dir, "lists"),
		"Dir::State::Status":         filepath.Join(f.Dir, "status"),
		"Dir::Cache":                 filepath.Join(f.Dir, "cache"),
		"APT::Architecture":          f.arch(),
		"Acquire::Languages":         "none",
	}
	if os.Geteuid() == 0 {
		// The private directories belong to root; apt's _apt sandbox user
		// could not write the downloads there.
		opts["APT::Sandbox::User"] = "root"
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, 2*len(keys)+1)
	args = append(args, "-q")
	for _, k := range keys {
		args = append(args, "-o", k+"="+opts[k])
	}
	return args
}

func (f *Fetcher) arch() string    { return orDefault(f.Arch, "amd64") }
func (f *Fetcher) keyring() string { return orDefault(f.Keyring, DefaultKeyring) }

func (f *Fetcher) mirror() string {
	if f.Mirror == "" {
		f.Mirror = HostMirror("/etc/apt")
	}
	return f.Mirror
}

func (f *Fetcher) progress() io.Writer {
	if f.Progress == nil {
		return io.Discard
	}
	return f.Progress
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
