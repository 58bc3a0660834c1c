package kernel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Option is one line of a config fragment or a .config: CONFIG_NAME=value, or
// "# CONFIG_NAME is not set" as Value "n".
type Option struct {
	Name  string // e.g. CONFIG_VIRTIO_BLK
	Value string // e.g. y, 64, "a string"; n for "is not set"
	Line  int    // 1-based line in its file
}

var (
	setRe   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.*)$`)
	unsetRe = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
)

// ParseConfig reads the options of a config fragment or a .config: CONFIG_X=v lines and
// "# CONFIG_X is not set" lines; other comments and blank lines are skipped. name is for
// errors. A line that is neither, or an option given twice, is an error naming the line.
func ParseConfig(data []byte, name string) ([]Option, error) {
	var (
		opts []Option
		errs []error
		seen = map[string]int{}
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		var o Option
		if m := setRe.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: m[2], Line: n}
		} else if m := unsetRe.FindStringSubmatch(line); m != nil {
			o = Option{Name: m[1], Value: "n", Line: n}
		} else if line == "" || strings.HasPrefix(line, "#") {
			continue
		} else {
			errs = append(errs, fmt.Errorf("%s:%d: %q is neither CONFIG_NAME=value nor a comment", name, n, line))
			continue
		}
		if first, ok := seen[o.Name]; ok {
			errs = append(errs, fmt.Errorf("%s:%d: %s is already set on line %d", name, n, o.Name, first))
			continue
		}
		seen[o.Name] = n
		opts = append(opts, o)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return opts, errors.Join(errs...)
}

// Apply returns base (a .config) with every option of fragment set as the fragment says:
// an option's line in base is replaced, one base lacks is appended, in the fragment's order.
// This is what the kernel's scripts/kconfig/merge_config.sh does before olddefconfig.
func Apply(base []byte, fragment []Option) []byte {
	want := make(map[string]string, len(fragment))
	for _, o := range fragment {
		want[o.Name] = o.Value
	}
	var out bytes.Buffer
	for _, line := range strings.SplitAfter(string(base), "\n") {
		if line == "" {
			continue
		}
		if name := optionName(strings.TrimSpace(line)); name != "" {
			if _, ok := want[name]; ok {
				continue // set below, from the fragment
			}
		}
		out.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			out.WriteByte('\n')
		}
	}
	for _, o := range fragment {
		out.WriteString(o.String())
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// String returns the option's line as a .config writes it.
func (o Option) String() string {
	if o.Value == "n" {
		return "# " + o.Name + " is not set"
	}
	return o.Name + "=" + o.Value
}

func optionName(line string) string {
	if m := setRe.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	if m := unsetRe.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// Check compares the final .config with the fragment: every option the fragment sets must
// have come out as asked. Kconfig drops an option whose dependencies are missing (or that a
// choice overrides) without a word, so this is where such an option surfaces, named with its
// fragment line and the value it got.
func Check(fragment []Option, config []byte, fragmentName string) error {
	got, err := ParseConfig(config, ".config")
	if err != nil {
		return err
	}
	have := make(map[string]string, len(got))
	for _, o := range got {
		have[o.Name] = o.Value
	}
	var errs []error
	for _, o := range fragment {
		v, ok := have[o.Name]
		if !ok {
			v = "n" // Kconfig leaves an option whose menu is hidden out of .config altogether
		}
		if v != o.Value {
			shown := v
			if !ok {
				shown = "absent (its dependencies are not met, or no such option)"
			}
			errs = append(errs, fmt.Errorf("%s:%d: %s=%s came out as %s", fragmentName, o.Line, o.Name, o.Value, shown))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the kernel configuration does not have what the fragment asks (Kconfig dropped them: add what they depend on): %w", errors.Join(errs...))
	}
	return nil
}
