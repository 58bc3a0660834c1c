package containerdcfg

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// setImports returns src with its top-level `imports` set to list (and `version = version`
// added when version > 0 and the file has none), every other byte kept: the array's text is
// replaced in place, or one line is inserted after the top-level `version` line (else at the
// top). The result is decoded and compared with src before it is returned.
func setImports(src []byte, list []string, version int) ([]byte, error) {
	text := string(src)
	keys, err := topLevelKeys(text)
	if err != nil {
		return nil, fmt.Errorf("read the top-level keys: %w", err)
	}
	val := formatArray(list)
	var out string
	if sp, ok := keys["imports"]; ok {
		out = text[:sp.valStart] + val + text[sp.valEnd:]
	} else {
		pos := 0
		if sp, ok := keys["version"]; ok {
			pos = sp.lineEnd
		}
		ins := "imports = " + val + "\n"
		if pos > 0 && text[pos-1] != '\n' {
			ins = "\n" + ins
		}
		out = text[:pos] + ins + text[pos:]
	}
	if _, ok := keys["version"]; !ok && version > 0 {
		out = fmt.Sprintf("version = %d\n", version) + out
	}
	if err := checkEdit(text, out, list, version); err != nil {
		return nil, err
	}
	return []byte(out), nil
}

// checkEdit decodes both texts: out must have imports == list and otherwise equal src.
func checkEdit(src, out string, list []string, version int) error {
	var a, b map[string]any
	if _, err := toml.Decode(src, &a); err != nil {
		return err
	}
	if _, err := toml.Decode(out, &b); err != nil {
		return fmt.Errorf("the edited file does not decode: %w", err)
	}
	got, _ := b["imports"].([]any)
	want := make([]any, len(list))
	for i, s := range list {
		want[i] = s
	}
	if len(list) == 0 {
		got = []any{} // an empty array decodes as nil or []any{}
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("the edited file's imports decode as %v, want %v", b["imports"], list)
	}
	delete(a, "imports")
	delete(b, "imports")
	if _, had := a["version"]; !had && version > 0 {
		if b["version"] != int64(version) {
			return fmt.Errorf("the edited file's version decodes as %v, want %d", b["version"], version)
		}
		delete(b, "version")
	}
	if !reflect.DeepEqual(normalize(a), normalize(b)) {
		return errors.New("the edited file decodes to other settings than the original")
	}
	return nil
}

func formatArray(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = basicString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// basicString writes s as a TOML basic string.
func basicString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// keySpan locates a top-level key's line and value.
type keySpan struct{ lineStart, valStart, valEnd, lineEnd int }

// topLevelKeys scans the key/value pairs before the first table header. It knows TOML's
// strings, arrays, inline tables and comments well enough to skip any value.
func topLevelKeys(s string) (map[string]keySpan, error) {
	keys := map[string]keySpan{}
	i := 0
	for i < len(s) {
		lineStart := i
		i = skipSpace(s, i)
		if i >= len(s) {
			break
		}
		switch s[i] {
		case '\n', '\r':
			i++
			continue
		case '#':
			i = lineEnd(s, i)
			continue
		case '[':
			return keys, nil
		}
		eq := strings.IndexByte(s[i:], '=')
		nl := strings.IndexByte(s[i:], '\n')
		if eq < 0 || (nl >= 0 && nl < eq) {
			return nil, fmt.Errorf("line at byte %d: a key without =", i)
		}
		key := strings.TrimSpace(s[i : i+eq])
		if uq, err := strconv.Unquote(key); err == nil && strings.HasPrefix(key, `"`) {
			key = uq
		} else if len(key) > 1 && key[0] == '\'' && key[len(key)-1] == '\'' {
			key = key[1 : len(key)-1]
		}
		vs := skipSpace(s, i+eq+1)
		ve, err := skipValue(s, vs)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", key, err)
		}
		end := lineEnd(s, ve)
		if end < len(s) {
			end++ // the newline
		}
		keys[key] = keySpan{lineStart, vs, ve, end}
		i = end
	}
	return keys, nil
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// lineEnd is the index of the newline that ends the line at i (or len(s)).
func lineEnd(s string, i int) int {
	if n := strings.IndexByte(s[i:], '\n'); n >= 0 {
		return i + n
	}
	return len(s)
}

// skipWS skips white space, newlines and comments (inside arrays and inline tables).
func skipWS(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		case '#':
			i = lineEnd(s, i)
		default:
			return i
		}
	}
	return i
}

var errUnterminated = errors.New("unterminated value")

// skipValue returns the end of the TOML value that starts at i.
func skipValue(s string, i int) (int, error) {
	if i >= len(s) {
		return 0, errUnterminated
	}
	switch {
	case strings.HasPrefix(s[i:], `"""`), strings.HasPrefix(s[i:], `'''`):
		delim := s[i : i+3]
		j := i + 3
		for {
			if j >= len(s) {
				return 0, errUnterminated
			}
			if delim[0] == '"' && s[j] == '\\' {
				j += 2
				continue
			}
			if strings.HasPrefix(s[j:], delim) {
				j += 3
				for k := 0; k < 2 && j < len(s) && s[j] == delim[0]; k++ {
					j++ // up to two quotes may end the content
				}
				return j, nil
			}
			j++
		}
	case s[i] == '"' || s[i] == '\'':
		for j := i + 1; j < len(s) && s[j] != '\n'; j++ {
			if s[i] == '"' && s[j] == '\\' {
				j++
				continue
			}
			if s[j] == s[i] {
				return j + 1, nil
			}
		}
		return 0, errUnterminated
	case s[i] == '[' || s[i] == '{':
		closer := byte(']')
		if s[i] == '{' {
			closer = '}'
		}
		j := i + 1
		for {
			j = skipWS(s, j)
			if j >= len(s) {
				return 0, errUnterminated
			}
			switch s[j] {
			case closer:
				return j + 1, nil
			case ',':
				j++
				continue
			}
			if closer == '}' { // key = value
				eq := strings.IndexByte(s[j:], '=')
				if eq < 0 {
					return 0, errUnterminated
				}
				j = skipSpace(s, j+eq+1)
			}
			end, err := skipValue(s, j)
			if err != nil {
				return 0, err
			}
			j = end
		}
	}
	j := i
	for j < len(s) && !strings.ContainsRune(",]}#\n\r", rune(s[j])) {
		j++
	}
	for j > i && (s[j-1] == ' ' || s[j-1] == '\t') {
		j--
	}
	if j == i {
		return 0, fmt.Errorf("empty value at byte %d", i)
	}
	return j, nil
}
