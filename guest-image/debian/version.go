package debian

import "strings"

// CompareVersions compares two Debian package versions
// ([epoch:]upstream[-revision]) the way dpkg does and returns a negative
// number, zero or a positive number when a is older than, equal to or newer
// than b. A "~" sorts before anything, even the end of the string, so
// "6.12.9-1~bpo12+1" is older than "6.12.9-1".
func CompareVersions(a, b string) int {
	ae, au, ar := splitVersion(a)
	be, bu, br := splitVersion(b)
	if c := compareNumbers(ae, be); c != 0 {
		return c
	}
	if c := compareFragment(au, bu); c != 0 {
		return c
	}
	return compareFragment(ar, br)
}

// splitVersion splits a version into epoch, upstream version and revision.
func splitVersion(v string) (epoch, upstream, revision string) {
	epoch = "0"
	if e, rest, ok := strings.Cut(v, ":"); ok {
		epoch, v = e, rest
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// compareFragment is dpkg's verrevcmp: alternating runs of non-digits
// (compared character by character with order) and digits (compared as
// numbers).
func compareFragment(a, b string) int {
	for a != "" || b != "" {
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			ac, bc := order(a), order(b)
			if ac != bc {
				return ac - bc
			}
			a, b = a[1:], b[1:]
		}
		var an, bn string
		an, a = leadingDigits(a)
		bn, b = leadingDigits(b)
		if c := compareNumbers(an, bn); c != 0 {
			return c
		}
	}
	return 0
}

// order ranks the first character of s: "~" first, then the end of the
// string and digits, then letters, then everything else.
func order(s string) int {
	if s == "" {
		return 0
	}
	c := s[0]
	switch {
	case isDigit(c):
		return 0
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	default:
		return int(c) + 256
	}
}

// leadingDigits splits s after its leading run of digits.
func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// compareNumbers compares two runs of decimal digits of any length.
func compareNumbers(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
