// Package containerdcfg adds Veil's runtime handlers to containerd's CRI plugin through a
// drop-in file that containerd's `imports` loads, and takes them away again.
//
// containerd 2.x (config version 3, and 4 from 2.4 on) merges an imported file into the main
// one key by key, so the drop-in holds only Veil's runtimes, under
// plugins.'io.containerd.cri.v1.runtime'. containerd 1.6 and 1.7 (config version 2) replace a
// plugin's whole section with the last file's, so there the drop-in carries a copy of the CRI
// plugin section of config.toml (plugins."io.containerd.grpc.v1.cri") plus Veil's runtimes;
// each install refreshes the copy. The main file is edited only to add the drop-in to its
// `imports` (unless a glob there already covers it), after a backup; it is created (version
// and imports only) when containerd runs on its defaults.
package containerdcfg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/veil-runtime/veil/deploy/installer/host"
)

// Names containerd and the shim agree on.
const (
	RuntimeType    = "io.containerd.veil.v2"
	DefaultConfig  = "/etc/containerd/config.toml"
	DefaultDropIn  = "/etc/containerd/conf.d/veil.toml"
	DropInName     = "veil.toml"
	BackupSuffix   = ".veil-backup"
	DefaultSocket  = "/run/containerd/containerd.sock"
	criPluginV2    = "io.containerd.grpc.v1.cri"
	criPluginV3    = "io.containerd.cri.v1.runtime"
	grpcPluginV4   = "io.containerd.server.v1.grpc"
	maxKnownFormat = 4
)

// PodAnnotations are the pod annotations containerd's CRI passes to the shim: the initdata
// (the pod's policy; its digest is bound to the launch) and the shim's own overrides, which
// the handler's configuration must still allow (runtime.allowed_annotations).
var PodAnnotations = []string{"io.katacontainers.config.hypervisor.cc_init_data", "io.veil.config.*"}

// Runtime is one runtime handler (the name a RuntimeClass's handler names).
type Runtime struct {
	Name        string
	ConfigPath  string // host path of its configuration.toml (the shim's ConfigPath option)
	Snapshotter string // its containerd snapshotter ("": containerd's default)
}

// Spec is what the drop-in declares.
type Spec struct {
	Runtimes []Runtime
	ShimPath string // host path of containerd-shim-veil-v2 (runtime_path)
	// SnapshotterAddress, when set, is veil-snapshotter's socket: the drop-in declares it as
	// the proxy plugin snapconfig.Name (containerd 2.x only; snapshotter.go).
	SnapshotterAddress string
}

// Config is containerd's main configuration file as found on the host, and the decisions
// that follow from it.
type Config struct {
	Host host.Host
	// Path is the host path of the main file; Exists whether it exists, Raw its bytes.
	Path   string
	Exists bool
	Raw    []byte
	// FileVersion is its `version` (0 when the file is missing or holds no key at all).
	FileVersion int
	// Imports is its `imports` as written.
	Imports []string
	// Version is the drop-in's config version: the file's, else 3 for containerd 2.x and 2
	// for 1.x.
	Version int
	// CopyCRI: containerd 1.x (or unknown with version 2) replaces whole plugin sections, so
	// the drop-in repeats config.toml's CRI section.
	CopyCRI bool
	// DropIn is the host path of the drop-in; Covered says an import already loads it, Exact
	// that one names it exactly (an entry veil-deploy may have added).
	DropIn         string
	Covered, Exact bool
	// Notes are things worth a log line (runtimes config.toml already defines, ...).
	Notes []string

	doc map[string]any // the decoded main file
}

// Read reads the host's containerd configuration at path (a host path; "" for the default)
// for a containerd of major version containerdMajor (0: unknown).
func Read(h host.Host, path string, containerdMajor int) (*Config, error) {
	if path == "" {
		path = DefaultConfig
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("containerd config %q: want an absolute path", path)
	}
	c := &Config{Host: h, Path: filepath.Clean(path), doc: map[string]any{}}
	raw, err := os.ReadFile(h.Path(c.Path))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read containerd config %s: %w", c.Path, err)
	default:
		c.Exists, c.Raw = true, raw
		if _, err := toml.Decode(string(raw), &c.doc); err != nil {
			return nil, fmt.Errorf("containerd config %s is not valid TOML: %w", c.Path, err)
		}
	}
	if err := c.decideVersion(containerdMajor); err != nil {
		return nil, err
	}
	if err := c.decideDropIn(); err != nil {
		return nil, err
	}
	if c.CopyCRI {
		if err := c.checkOtherImports(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Config) decideVersion(major int) error {
	if v, ok := c.doc["version"]; ok {
		n, ok := v.(int64)
		if !ok {
			return fmt.Errorf("containerd config %s: version = %v: want an integer", c.Path, v)
		}
		c.FileVersion = int(n)
	} else if len(c.doc) > 0 {
		c.FileVersion = 1
	}
	if imp, ok := c.doc["imports"]; ok {
		list, ok := imp.([]any)
		if !ok {
			return fmt.Errorf("containerd config %s: imports = %v: want a list of paths", c.Path, imp)
		}
		for _, v := range list {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("containerd config %s: imports holds %v: want paths", c.Path, v)
			}
			c.Imports = append(c.Imports, s)
		}
	}
	switch {
	case c.FileVersion == 1:
		return fmt.Errorf("containerd config %s has no version key (config version 1, whose plugin names "+
			"Veil does not write): migrate it first (containerd 2.x: `containerd config migrate`; 1.x: "+
			"version = 2 and plugins.\"io.containerd.grpc.v1.cri\")", c.Path)
	case c.FileVersion > maxKnownFormat:
		return fmt.Errorf("containerd config %s: version = %d is newer than this installer knows (2 to %d)",
			c.Path, c.FileVersion, maxKnownFormat)
	case c.FileVersion >= 3 && major == 1:
		return fmt.Errorf("containerd config %s: version = %d, but containerd is 1.x, which reads versions 1 and 2 only",
			c.Path, c.FileVersion)
	case c.FileVersion >= 2:
		c.Version = c.FileVersion
	case major >= 2:
		c.Version = 3
	case major == 1:
		c.Version = 2
	default:
		return fmt.Errorf("containerd config %s: cannot tell which config version to write: the file has "+
			"none and containerd's version is unknown (is containerd installed on the host?)", c.Path)
	}
	c.CopyCRI = c.Version == 2 && major < 2
	return nil
}

// DropInFor is the drop-in's path when no import of the main file config decides it:
// conf.d/veil.toml beside it (DefaultDropIn for DefaultConfig).
func DropInFor(config string) string {
	return filepath.Join(filepath.Dir(config), "conf.d", DropInName)
}

// resolve makes an import entry absolute as containerd does (relative to the main file).
func (c *Config) resolve(entry string) string {
	p := filepath.Clean(entry)
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(c.Path), p)
	}
	return p
}

// covers reports whether the import entry loads the host file p: an exact path, or a
// pattern with "*" (containerd globs only those).
func (c *Config) covers(entry, p string) (covered, exact bool) {
	r := c.resolve(entry)
	if !strings.Contains(r, "*") {
		return r == p, r == p
	}
	ok, err := filepath.Match(r, p)
	return err == nil && ok, false
}

func (c *Config) decideDropIn() error {
	c.DropIn = DropInFor(c.Path)
	for _, e := range c.Imports {
		if cov, ex := c.covers(e, c.DropIn); cov {
			c.Covered, c.Exact = true, c.Exact || ex
		}
	}
	if c.Covered {
		return nil
	}
	// A glob of a directory of its own (conf.d/*.toml): put the drop-in there, edit nothing.
	for _, e := range c.Imports {
		r := c.resolve(e)
		dir := filepath.Dir(r)
		if !strings.Contains(r, "*") || strings.Contains(dir, "*") {
			continue
		}
		cand := filepath.Join(dir, DropInName)
		if ok, _ := c.covers(e, cand); ok && cand != c.Path {
			c.DropIn, c.Covered = cand, true
			return nil
		}
	}
	return nil
}

// checkOtherImports refuses, for containerd 1.x, an imported file other than the drop-in
// that configures the CRI plugin: whichever file came last would replace the other's whole
// section.
func (c *Config) checkOtherImports() error {
	for _, e := range c.Imports {
		r := c.resolve(e)
		files := []string{r}
		if strings.Contains(r, "*") {
			m, err := filepath.Glob(c.Host.Path(r))
			if err != nil {
				return fmt.Errorf("containerd config %s: import %q: %w", c.Path, e, err)
			}
			files = files[:0]
			for _, f := range m {
				rel, _ := filepath.Rel(c.Host.Path("/"), f)
				files = append(files, "/"+rel)
			}
		}
		for _, f := range files {
			if f == c.DropIn {
				continue
			}
			var doc map[string]any
			if _, err := toml.DecodeFile(c.Host.Path(f), &doc); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				return fmt.Errorf("containerd config %s imports %s, which is not valid TOML: %w", c.Path, f, err)
			}
			if _, ok := table(doc, "plugins", criPluginV2); ok {
				return fmt.Errorf("containerd config %s imports %s, which configures the CRI plugin (%s): "+
					"containerd 1.x replaces that whole section with the last file's, so Veil's drop-in would "+
					"undo it or be undone; move those settings into %s and run the installer again",
					c.Path, f, criPluginV2, c.Path)
			}
		}
	}
	return nil
}

// criTable is the main file's CRI runtime plugin section (nil when it has none).
func (c *Config) criTable() map[string]any {
	name := criPluginV3
	if c.Version == 2 {
		name = criPluginV2
	}
	t, _ := table(c.doc, "plugins", name)
	return t
}

// Socket is containerd's gRPC socket (a host path) as the file configures it.
func (c *Config) Socket() string {
	for _, path := range [][]string{{"grpc"}, {"plugins", grpcPluginV4}} {
		if t, ok := table(c.doc, path...); ok {
			if a, ok := t["address"].(string); ok && a != "" {
				return a
			}
		}
	}
	return DefaultSocket
}

// Describe is a line about the file for `veil-deploy check`.
func (c *Config) Describe() string {
	how := "key by key"
	if c.CopyCRI {
		how = "copying config.toml's CRI section (containerd 1.x replaces whole plugin sections)"
	}
	switch {
	case !c.Exists:
		return fmt.Sprintf("%s missing (containerd's defaults): would create it with version = %d and imports = [%q]; drop-in merged %s",
			c.Path, c.Version, c.DropIn, how)
	case c.Covered:
		return fmt.Sprintf("%s version %d; imports already cover %s; drop-in merged %s", c.Path, c.FileVersion, c.DropIn, how)
	}
	return fmt.Sprintf("%s version %d; would add %s to its imports (backup %s%s); drop-in merged %s",
		c.Path, c.FileVersion, c.DropIn, c.Path, BackupSuffix, how)
}

// table walks nested TOML tables.
func table(doc map[string]any, path ...string) (map[string]any, bool) {
	cur := doc
	for _, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			return nil, false
		}
		cur = next
	}
	return cur, true
}
