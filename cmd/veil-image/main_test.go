package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{nil, "usage: veil-image build"},
		{[]string{"push"}, "usage: veil-image build"},
		{[]string{"build", "--out", t.TempDir(), "extra"}, "unexpected arguments"},
		{[]string{"build", "--out", t.TempDir(), "--cache", t.TempDir()}, "veil-init is not next to veil-image"},
		{[]string{"build", "--out", t.TempDir(), "--cache", t.TempDir(), "--agent", "/bin/true"}, "veil-init is not next to veil-image"},
		{[]string{"build", "--cache", t.TempDir(), "--init", "/bin/sh"}, "no output directory"},
	}
	for _, tt := range tests {
		err := run(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
		}
	}
}

// TestDefaultsBesideExecutable: with veil-init and veil-agent next to veil-image, a bare
// `build --out DIR` takes them (issue 12: the agent as /init made an image that did not boot);
// the agent named by the defaults is checked by the build itself.
func TestDefaultsBesideExecutable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	init := filepath.Join(filepath.Dir(exe), "veil-init")
	if _, err := os.Stat(init); err == nil {
		t.Fatalf("%s exists beside the test binary; the test would not see the default", init)
	}
	if err := os.WriteFile(init, []byte("not an ELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(init) })
	err = run([]string{"build", "--out", t.TempDir(), "--cache", t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), init) || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("run = %v, want the build to read the default /init %s", err, init)
	}
}

func TestSplitList(t *testing.T) {
	if got := strings.Join(splitList(" a, b,,c "), "|"); got != "a|b|c" {
		t.Errorf("splitList = %q", got)
	}
	if got := splitList(""); got == nil || len(got) != 0 {
		t.Errorf("splitList(\"\") = %#v, want an empty non-nil list (no modules)", got)
	}
}
