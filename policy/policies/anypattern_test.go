package policies

import (
	"regexp"
	"testing"
)

// TestAnyPattern checks the alternation the fast path matches variables against: it matches
// exactly what one of the patterns matches, and nothing when there are none or one is invalid.
func TestAnyPattern(t *testing.T) {
	patterns := []string{`^HOSTNAME=[a-z]*$`, `(?i)^debug=`, `x|y`}
	re := regexp.MustCompile(anyPattern(patterns))
	for _, s := range []string{"HOSTNAME=web", "HOSTNAME=Web", "DEBUG=1", "debug=1", "a", "box", "HOSTNAME=web\n", ""} {
		any := false
		for _, p := range patterns {
			any = any || regexp.MustCompile(p).MatchString(s)
		}
		if got := re.MatchString(s); got != any {
			t.Errorf("%q: alternation %v, patterns %v", s, got, any)
		}
	}
	for _, ps := range [][]string{nil, {`a)|(b`}, {`x`, `(`}} {
		if p := anyPattern(ps); regexp.MustCompile(p).MatchString("") || regexp.MustCompile(p).MatchString("ab") {
			t.Errorf("%q gives %q, which matches", ps, p)
		}
	}
}
