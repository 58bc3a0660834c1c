package payload

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/veil-runtime/veil/deploy/installer/internal/atomicfile"
	"github.com/veil-runtime/veil/shim/config"
)

// ConfigSpec is one runtime handler's configuration file, derived from the shipped
// configuration.toml.
type ConfigSpec struct {
	File      string // relative path in the payload
	Handler   string
	TEE       string // hypervisor.tee
	GuestPull bool   // runtime.guest_pull
	Accel     string // hypervisor.accel ("" keeps the base's)
	Firmware  string // hypervisor.firmware: a host path ("" keeps "")
}

// BuildOptions says what goes into a payload.
type BuildOptions struct {
	// Out is the payload directory to write (created; files already there and not listed
	// are left alone and not listed).
	Out string
	// Files maps a relative payload path to the file to copy there (the execute bits are
	// kept: binaries end up 0755, the rest 0644).
	Files map[string]string
	// BaseConfig is the shim's configuration.toml every handler's file derives from.
	BaseConfig string
	// ImageDir is the host path of the installed guest image (hypervisor.image).
	ImageDir string
	Configs  []ConfigSpec
}

// Build writes the payload directory and its SHA256SUMS, and returns the manifest.
func Build(o BuildOptions) (*Manifest, error) {
	if o.Out == "" {
		return nil, fmt.Errorf("payload: no output directory")
	}
	m := &Manifest{}
	add := func(rel string) error {
		sum, err := atomicfile.SHA256(filepath.Join(o.Out, filepath.FromSlash(rel)))
		if err != nil {
			return fmt.Errorf("payload %s: %w", rel, err)
		}
		m.Files = append(m.Files, File{Path: rel, SHA256: sum})
		return nil
	}
	rels := make([]string, 0, len(o.Files))
	for rel := range o.Files {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		if err := checkRel(rel); err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		if err := copyFile(o.Files[rel], filepath.Join(o.Out, filepath.FromSlash(rel))); err != nil {
			return nil, err
		}
		if err := add(rel); err != nil {
			return nil, err
		}
	}
	var base []byte
	if len(o.Configs) > 0 {
		var err error
		if base, err = os.ReadFile(o.BaseConfig); err != nil {
			return nil, fmt.Errorf("payload: base configuration: %w", err)
		}
	}
	for _, s := range o.Configs {
		if err := checkRel(s.File); err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		data, err := DeriveConfig(base, filepath.Base(o.BaseConfig), s, o.ImageDir)
		if err != nil {
			return nil, err
		}
		dst := filepath.Join(o.Out, filepath.FromSlash(s.File))
		if err := atomicfile.WriteFile(dst, data, 0o644); err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		if err := checkConfig(dst, s, o.ImageDir); err != nil {
			return nil, err
		}
		if err := add(s.File); err != nil {
			return nil, err
		}
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	if err := atomicfile.WriteFile(filepath.Join(o.Out, ManifestName), m.Format(), 0o644); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return m, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("payload: %s is not a regular file", src)
	}
	perm := os.FileMode(0o644)
	if fi.Mode()&0o111 != 0 {
		perm = 0o755
	}
	out, err := atomicfile.Temp(dst)
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		atomicfile.Abort(out)
		return fmt.Errorf("payload: copy %s: %w", src, err)
	}
	return atomicfile.Commit(out, dst, perm)
}

// DeriveConfig is the base configuration with the handler's keys set (image, tee,
// guest_pull, and accel and firmware when given) and a header naming the handler; every
// other line and comment is kept.
func DeriveConfig(base []byte, baseName string, s ConfigSpec, imageDir string) ([]byte, error) {
	text := string(base)
	// Drop the base's leading comment block (it describes the plain handler).
	lines := strings.SplitAfter(text, "\n")
	n := 0
	for n < len(lines) && strings.HasPrefix(lines[n], "#") {
		n++
	}
	text = strings.Join(lines[n:], "")
	sets := []struct{ table, key, value string }{
		{"hypervisor", "image", strconv.Quote(imageDir)},
		{"hypervisor", "tee", strconv.Quote(s.TEE)},
		{"runtime", "guest_pull", strconv.FormatBool(s.GuestPull)},
	}
	if s.Accel != "" {
		sets = append(sets, struct{ table, key, value string }{"hypervisor", "accel", strconv.Quote(s.Accel)})
	}
	if s.Firmware != "" {
		sets = append(sets, struct{ table, key, value string }{"hypervisor", "firmware", strconv.Quote(s.Firmware)})
	}
	for _, kv := range sets {
		var err error
		if text, err = setKey(text, kv.table, kv.key, kv.value); err != nil {
			return nil, fmt.Errorf("payload: configuration for %s from %s: %w", s.Handler, baseName, err)
		}
	}
	head := fmt.Sprintf("# Veil shim configuration of runtime handler %q (tee = %q), installed by veil-deploy\n"+
		"# (derived from %s; every key is documented in docs/config.md). veil-deploy\n"+
		"# replaces this file on every install: change the installer's payload, not this file.\n",
		s.Handler, s.TEE, baseName)
	return []byte(head + text), nil
}

var header = regexp.MustCompile(`^\s*\[([^\[\]]+)\]\s*(#.*)?$`)

// setKey sets key = value in [table]: the key's line is replaced (its indentation kept),
// or a line is added after the table's header.
func setKey(text, table, key, value string) (string, error) {
	lines := strings.SplitAfter(text, "\n")
	keyLine := regexp.MustCompile(`^(\s*)` + regexp.QuoteMeta(key) + `\s*=`)
	in, headerAt := false, -1
	for i, l := range lines {
		if m := header.FindStringSubmatch(l); m != nil {
			in = strings.TrimSpace(m[1]) == table
			if in {
				headerAt = i
			}
			continue
		}
		if in {
			if m := keyLine.FindStringSubmatch(l); m != nil {
				lines[i] = m[1] + key + " = " + value + "\n"
				return strings.Join(lines, ""), nil
			}
		}
	}
	if headerAt < 0 {
		return "", fmt.Errorf("no [%s] table", table)
	}
	lines[headerAt] = strings.TrimRight(lines[headerAt], "\n") + "\n" + key + " = " + value + "\n"
	return strings.Join(lines, ""), nil
}

// checkConfig loads the derived file the way the shim will and checks the keys it set.
func checkConfig(path string, s ConfigSpec, imageDir string) error {
	c, err := config.Load(path)
	if err != nil {
		return fmt.Errorf("payload: derived configuration for %s does not load: %w", s.Handler, err)
	}
	h := c.Hypervisor
	if h.TEE != s.TEE || c.Runtime.GuestPull != s.GuestPull || h.Image != imageDir ||
		(s.Firmware != "" && h.Firmware != s.Firmware) || (s.Accel != "" && h.Accel != s.Accel) {
		return fmt.Errorf("payload: derived configuration for %s reads tee=%q guest_pull=%v image=%q firmware=%q accel=%q",
			s.Handler, h.TEE, c.Runtime.GuestPull, h.Image, h.Firmware, h.Accel)
	}
	return nil
}
