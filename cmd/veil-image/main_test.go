package main

import (
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
		{[]string{"build", "--out", t.TempDir(), "--cache", t.TempDir()}, "veil-agent"},
		{[]string{"build", "--cache", t.TempDir(), "--init", "/bin/sh"}, "no output directory"},
	}
	for _, tt := range tests {
		err := run(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("run(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
		}
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
