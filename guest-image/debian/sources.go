package debian

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// DefaultMirror is used when the host's apt sources name no Debian mirror.
const DefaultMirror = "http://deb.debian.org/debian"

// HostMirror returns the URI of the first Debian archive (not a security
// archive) that the host's apt sources under etcApt (normally /etc/apt) use,
// from sources.list, sources.list.d/*.list and sources.list.d/*.sources.
// It returns DefaultMirror when there is none.
func HostMirror(etcApt string) string {
	files := []string{filepath.Join(etcApt, "sources.list")}
	for _, pattern := range []string{"*.sources", "*.list"} {
		m, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", pattern))
		sort.Strings(m)
		files = append(files, m...)
	}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(file, ".sources") {
			uri = mirrorDeb822(f)
		} else {
			uri = mirrorOneLine(f)
		}
		f.Close()
		if uri != "" {
			return uri
		}
	}
	return DefaultMirror
}

// mirrorOneLine reads "deb [options] URI SUITE COMPONENT..." lines.
func mirrorOneLine(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		fields = fields[1:]
		if strings.HasPrefix(fields[0], "[") {
			for len(fields) > 0 && !strings.HasSuffix(fields[0], "]") {
				fields = fields[1:]
			}
			if len(fields) > 0 {
				fields = fields[1:]
			}
		}
		if len(fields) >= 2 && usableSuite(fields[1]) {
			return strings.TrimRight(fields[0], "/")
		}
	}
	return ""
}

// mirrorDeb822 reads deb822 stanzas (Types:, URIs:, Suites:, Enabled:).
func mirrorDeb822(r io.Reader) string {
	stanza := map[string]string{}
	check := func() string {
		defer clear(stanza)
		if stanza["enabled"] == "no" || !slices.Contains(strings.Fields(stanza["types"]), "deb") {
			return ""
		}
		uris := strings.Fields(stanza["uris"])
		for _, s := range strings.Fields(stanza["suites"]) {
			if usableSuite(s) && len(uris) > 0 {
				return strings.TrimRight(uris[0], "/")
			}
		}
		return ""
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if uri := check(); uri != "" {
				return uri
			}
		case strings.HasPrefix(line, "#"), strings.HasPrefix(line, " "), strings.HasPrefix(line, "\t"):
		default:
			if k, v, ok := strings.Cut(line, ":"); ok {
				stanza[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
	}
	return check()
}

// usableSuite reports whether a suite is served by the main archive (the
// security archive lives elsewhere and carries no backports).
func usableSuite(s string) bool {
	return !strings.HasSuffix(s, "-security") && !strings.Contains(s, "/")
}
