package api

import (
	"strings"
	"testing"
)

func TestCheckEmptyDirName(t *testing.T) {
	for _, name := range []string{"cache", "a", "scratch-1", "0x", strings.Repeat("a", MaxEmptyDirName)} {
		if err := CheckEmptyDirName(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
		if p := EmptyDirPath(name); p != "/run/veil/emptydir/"+name {
			t.Errorf("EmptyDirPath(%q) = %s", name, p)
		}
	}
	for name, want := range map[string]string{
		"":                                     "is empty",
		"a/b":                                  "contains '/'",
		"/":                                    "contains '/'",
		"..":                                   `contains ".."`,
		".":                                    `contains ".."`,
		"a..b":                                 `contains ".."`,
		strings.Repeat("a", MaxEmptyDirName+1): "is 64 bytes long (at most 63)",
		"Cache":                                "is not a DNS label",
		"-cache":                               "is not a DNS label",
		"cache-":                               "is not a DNS label",
		"ca che":                               "is not a DNS label",
		"ca\x00che":                            "is not a DNS label",
		"ca.che":                               "is not a DNS label",
	} {
		err := CheckEmptyDirName(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error saying %q", name, err, want)
		}
	}
}
