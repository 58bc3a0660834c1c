package containerdcfg

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"text/template"

	"github.com/BurntSushi/toml"
)

// runtimesTemplate declares the runtimes under Prefix (the CRI plugin's table name).
var runtimesTemplate = template.Must(template.New("runtimes").Funcs(template.FuncMap{"lit": literal}).Parse(`
{{- range .Runtimes}}
[{{$.Prefix}}.containerd.runtimes.{{.Name}}]
  runtime_type = {{lit $.Type}}
  runtime_path = {{lit $.ShimPath}}
  privileged_without_host_devices = true
  pod_annotations = [{{range $i, $a := $.Annotations}}{{if $i}}, {{end}}{{lit $a}}{{end}}]
{{- if .Snapshotter}}
  snapshotter = {{lit .Snapshotter}}
{{- end}}
  [{{$.Prefix}}.containerd.runtimes.{{.Name}}.options]
    ConfigPath = {{lit .ConfigPath}}
{{end}}`))

const header = `# Written by veil-deploy, the Veil node installer: Veil's runtime handlers for containerd's CRI
# plugin. veil-deploy rewrites this file on every install and removes it on uninstall.
`

const copyHeader = `#
# containerd 1.x replaces a plugin's whole configuration with an imported file's, so this file
# repeats the CRI plugin section of %s as it was at the install, followed by
# Veil's runtimes. After changing that section of %s, run veil-deploy install
# again (or restart the installer pod) to refresh the copy.
`

// literal writes s as a TOML literal string.
func literal(s string) (string, error) {
	if strings.ContainsAny(s, "'\n\r\x00") {
		return "", fmt.Errorf("%q cannot be a TOML literal string", s)
	}
	return "'" + s + "'", nil
}

// prefix is the CRI runtime plugin's table for the drop-in's config version.
func (c *Config) prefix() string {
	if c.Version == 2 {
		return `plugins."` + criPluginV2 + `"`
	}
	return "plugins.'" + criPluginV3 + "'"
}

// Render is the drop-in declaring spec's runtimes.
func (c *Config) Render(spec Spec) ([]byte, error) {
	if len(spec.Runtimes) == 0 {
		return nil, fmt.Errorf("containerd drop-in: no runtime to declare")
	}
	for _, r := range spec.Runtimes {
		if r.Name == "" || strings.Trim(r.Name, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return nil, fmt.Errorf("containerd drop-in: runtime name %q: want lower-case letters, digits, - and _", r.Name)
		}
	}
	if rts, ok := table(c.criTable(), "containerd", "runtimes"); ok {
		for _, r := range spec.Runtimes {
			if _, ok := rts[r.Name]; ok {
				c.note(fmt.Sprintf("%s declares runtime %q itself; the drop-in's settings win", c.Path, r.Name))
			}
		}
	}
	var b bytes.Buffer
	b.WriteString(header)
	var copied map[string]any
	if c.CopyCRI {
		fmt.Fprintf(&b, copyHeader, c.Path, c.Path)
		var err error
		if copied, err = c.copyCRI(spec); err != nil {
			return nil, err
		}
	}
	if copied != nil {
		b.WriteString("\n")
		doc := map[string]any{"version": c.Version, "plugins": map[string]any{criPluginV2: copied}}
		enc := toml.NewEncoder(&b)
		enc.Indent = "  "
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("containerd drop-in: encode the CRI section of %s: %w", c.Path, err)
		}
	} else {
		fmt.Fprintf(&b, "\nversion = %d\n", c.Version)
	}
	err := runtimesTemplate.Execute(&b, map[string]any{
		"Prefix": c.prefix(), "Type": RuntimeType, "ShimPath": spec.ShimPath,
		"Annotations": PodAnnotations, "Runtimes": spec.Runtimes,
	})
	if err != nil {
		return nil, fmt.Errorf("containerd drop-in: %w", err)
	}
	if err := c.renderSnapshotter(&b, spec); err != nil {
		return nil, err
	}
	if err := c.checkRendered(b.Bytes(), spec, copied); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// copyCRI is a deep copy of the main file's CRI section without the runtimes spec declares
// (nil when the file has no such section).
func (c *Config) copyCRI(spec Spec) (map[string]any, error) {
	cri := c.criTable()
	if cri == nil {
		return nil, nil
	}
	cp := deepCopy(cri).(map[string]any)
	if rts, ok := table(cp, "containerd", "runtimes"); ok {
		for _, r := range spec.Runtimes {
			delete(rts, r.Name)
		}
	}
	return cp, nil
}

// note adds a note once.
func (c *Config) note(n string) {
	for _, m := range c.Notes {
		if m == n {
			return
		}
	}
	c.Notes = append(c.Notes, n)
}

// checkRendered decodes the drop-in and checks it says what was meant: each runtime with its
// type, path and config, and for containerd 1.x the CRI section of the main file unchanged.
func (c *Config) checkRendered(data []byte, spec Spec, copied map[string]any) error {
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return fmt.Errorf("containerd drop-in: rendered TOML does not decode: %w", err)
	}
	name := criPluginV3
	if c.Version == 2 {
		name = criPluginV2
	}
	rts, ok := table(doc, "plugins", name, "containerd", "runtimes")
	if !ok {
		return fmt.Errorf("containerd drop-in: rendered TOML has no plugins.%s.containerd.runtimes", name)
	}
	for _, r := range spec.Runtimes {
		rt, _ := rts[r.Name].(map[string]any)
		opts, _ := rt["options"].(map[string]any)
		sn, _ := rt["snapshotter"].(string)
		if rt["runtime_type"] != RuntimeType || rt["runtime_path"] != spec.ShimPath || opts["ConfigPath"] != r.ConfigPath ||
			sn != r.Snapshotter {
			return fmt.Errorf("containerd drop-in: runtime %s rendered as %v", r.Name, rt)
		}
	}
	if err := checkSnapshotter(doc, spec); err != nil {
		return err
	}
	if copied == nil {
		return nil
	}
	// The decoded CRI section must be the copy plus the runtimes, nothing lost or changed.
	want := deepCopy(copied).(map[string]any)
	ctd, ok := want["containerd"].(map[string]any)
	if !ok {
		ctd = map[string]any{}
		want["containerd"] = ctd
	}
	wrts, ok := ctd["runtimes"].(map[string]any)
	if !ok {
		wrts = map[string]any{}
		ctd["runtimes"] = wrts
	}
	for _, r := range spec.Runtimes {
		wrts[r.Name] = rts[r.Name]
	}
	cri, _ := table(doc, "plugins", name)
	if !reflect.DeepEqual(normalize(cri), normalize(want)) {
		return fmt.Errorf("containerd drop-in: the copy of %s's CRI section does not decode to the original", c.Path)
	}
	return nil
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []map[string]any:
		s := make([]map[string]any, len(t))
		for i, e := range t {
			s[i] = deepCopy(e).(map[string]any)
		}
		return s
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

// normalize makes decoded TOML comparable: arrays of tables decode as []map[string]any
// from headers and []any from inline arrays.
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = normalize(e)
		}
		return m
	case []map[string]any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = normalize(e)
		}
		return s
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = normalize(e)
		}
		return s
	}
	return v
}
