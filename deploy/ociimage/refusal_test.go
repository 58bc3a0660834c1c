package ociimage

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Build refuses what it cannot make reproducibly or safely, and reports every problem.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	ok := writeFile(t, dir, "ok", "x", 0o644)
	for _, c := range []struct {
		name string
		spec Spec
		want []string
	}{
		{"missing file", Spec{Files: []File{{Path: "a", Mode: 0o644, Source: filepath.Join(dir, "nope")}}},
			[]string{"a: stat ", "no such file"}},
		{"directory as source", Spec{Files: []File{{Path: "a", Mode: 0o644, Source: dir}}}, []string{"not a regular file"}},
		{"dot dot", Spec{Files: []File{{Path: "usr/../../etc/passwd", Mode: 0o644, Source: ok}}}, []string{`".." elements`}},
		{"leading dot dot", Spec{Files: []File{{Path: "/../x", Mode: 0o644, Source: ok}}}, []string{`".." elements`}},
		{"dot", Spec{Files: []File{{Path: "./x", Mode: 0o644, Source: ok}}}, []string{`"." elements`}},
		{"empty element", Spec{Files: []File{{Path: "a//b", Mode: 0o644, Source: ok}}}, []string{`"" elements`}},
		{"root", Spec{Files: []File{{Path: "/", Mode: 0o755}}}, []string{"empty"}},
		{"twice", Spec{Files: []File{{Path: "a", Mode: 0o644, Source: ok}, {Path: "/a", Mode: 0o644, Source: ok}}},
			[]string{"a: listed twice"}},
		{"type bits", Spec{Files: []File{{Path: "a", Mode: fs.ModeSymlink | 0o777, Source: ok}}}, []string{"only permission bits"}},
		{"file as parent", Spec{Files: []File{{Path: "a", Mode: 0o644, Source: ok}, {Path: "a/b", Mode: 0o644, Source: ok}}},
			[]string{"a/b: its parent a is a file"}},
		{"sums listed", Spec{Files: []File{{Path: "p/SHA256SUMS", Mode: 0o644, Source: ok}}, Checksums: []string{"p"}},
			[]string{"p/SHA256SUMS: listed, but it is generated"}},
		{"sums of a file", Spec{Files: []File{{Path: "p", Mode: 0o644, Source: ok}}, Checksums: []string{"p"}},
			[]string{"checksums: p is a file"}},
		{"sums escaping", Spec{Checksums: []string{"../p"}}, []string{"checksums: ", `".." elements`}},
		{"all at once", Spec{Files: []File{{Path: "../a", Source: ok}, {Path: "b", Source: filepath.Join(dir, "nope")}}},
			[]string{`".." elements`, "b: stat "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.spec.Name = "veil-kbs:dev"
			_, err := Build(c.spec)
			if err == nil {
				t.Fatal("built")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"veil-kbs:dev":                      "docker.io/library/veil-kbs:dev",
		"veil-kbs":                          "docker.io/library/veil-kbs:latest",
		"registry.example:5000/veil/kbs:v1": "registry.example:5000/veil/kbs:v1",
		"localhost/veil-installer:dev":      "localhost/veil-installer:dev",
		"Veil:dev":                          "",
		"veil-kbs@sha256:" + strings.Repeat("a", 64): "",
		"": "",
	} {
		got, err := NormalizeName(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// WriteLayout replaces an earlier layout but never a directory that holds something else.
func TestWriteLayoutRefusesOtherDirectories(t *testing.T) {
	dir := t.TempDir()
	img, err := Build(kbsSpec(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	keep := writeFile(t, other, "keep", "precious", 0o644)
	if err := img.WriteLayout(other); err == nil || !strings.Contains(err.Error(), "not an OCI layout") {
		t.Fatalf("WriteLayout over a directory: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layout")
	for range 2 {
		if err := img.WriteLayout(out); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
