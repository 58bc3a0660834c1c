package qemu

import "testing"

func TestTCGCPU(t *testing.T) {
	for _, tc := range []struct {
		ver  string
		want string
	}{
		{"7.2.22", "max,cx16=off"},
		{"9.2", "max,cx16=off"},
		{"10.0.2", "max"},
		{"10.1", "max"},
	} {
		v, err := parseVersion(tc.ver)
		if err != nil {
			t.Fatal(err)
		}
		if got := tcgCPU(v); got != tc.want {
			t.Errorf("tcgCPU(%s) = %q, want %q", tc.ver, got, tc.want)
		}
	}
}
