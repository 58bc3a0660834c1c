package ociimage

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// The command line builds the same image as Build with the equivalent Spec, from flags and a
// manifest, and writes an archive whose entries are sorted, owned by 0:0 and stamped.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	writeFile(t, dir, "bin/veil-deploy", "installer", 0o750)
	writeFile(t, dir, "bin/shim", "shim", 0o755)
	writeFile(t, dir, "image/vmlinuz", "kernel", 0o600)
	manifest := writeFile(t, dir, "payload.list", `# the payload
opt/veil-payload/bin/containerd-shim-veil-v2 0755 bin/shim
opt/veil-payload/share/veil/image/vmlinuz   0644 image/vmlinuz

opt/veil-payload/share 0700
`, 0o644)
	var out bytes.Buffer
	err := Command([]string{"--name", "veil-installer:dev", "--layout", "img", "--archive", "img.oci.tar",
		"--file", "usr/local/bin/veil-deploy=bin/veil-deploy", "--dir", "tmp=1777", "--manifest", manifest,
		"--sha256sums", "opt/veil-payload", "--entrypoint", "/usr/local/bin/veil-deploy", "--entrypoint", "install",
		"--user", "0:0", "--label", "org.opencontainers.image.version=v1", "--env", "A=b"}, &out, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	mode, _ := ParseMode("1777")
	share, _ := ParseMode("0700")
	img, err := Build(Spec{
		Name: "veil-installer:dev",
		Files: []File{
			{Path: "opt/veil-payload/share", Mode: share},
			{Path: "opt/veil-payload/share/veil/image/vmlinuz", Mode: 0o644, Source: "image/vmlinuz"},
			{Path: "opt/veil-payload/bin/containerd-shim-veil-v2", Mode: 0o755, Source: "bin/shim"},
			{Path: "tmp", Mode: mode},
			{Path: "usr/local/bin/veil-deploy", Mode: 0o755, Source: "bin/veil-deploy"},
		},
		Checksums:  []string{"opt/veil-payload"},
		Entrypoint: []string{"/usr/local/bin/veil-deploy", "install"},
		Env:        []string{"A=b"},
		User:       "0:0",
		Labels:     map[string]string{"org.opencontainers.image.version": "v1"},
		Created:    time.Unix(1700000000, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "docker.io/library/veil-installer:dev " + img.Digest.String() + " (img, img.oci.tar)\n"
	if out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}
	f, err := os.Open("img.oci.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	for _, e := range readTar(t, f) {
		h := e.hdr
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(1700000000, 0)) || (h.Mode != 0o644 && h.Mode != 0o755) {
			t.Errorf("archive entry %s: %d:%d %v %o", h.Name, h.Uid, h.Gid, h.ModTime, h.Mode)
		}
	}
	if !slices.IsSorted(names) || !slices.Contains(names, "oci-layout") || !slices.Contains(names, "index.json") ||
		!slices.Contains(names, "blobs/sha256/"+img.Digest.Hex) {
		t.Errorf("archive entries %q", names)
	}
	if _, err := layout.ImageIndexFromPath(filepath.Join(dir, "img")); err != nil {
		t.Fatal(err)
	}
}

func TestCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.list", "a\nb 0999 x\nc 0644 x y z\n", 0o644)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--layout", "x"}, []string{"--name and --layout are required"}},
		{[]string{"--name", "a", "--layout", "x", "extra"}, []string{"unexpected arguments"}},
		{[]string{"--name", "a", "--layout", "x", "--file", "nosource"}, []string{"want IMAGE-PATH=SOURCE"}},
		{[]string{"--name", "a", "--layout", "x", "--file", "a=" + filepath.Join(dir, "missing")}, []string{"--file a: stat"}},
		{[]string{"--name", "a", "--layout", "x", "--dir", "tmp=rwx"}, []string{"want IMAGE-PATH=OCTAL-MODE"}},
		{[]string{"--name", "a", "--layout", "x", "--label", "novalue"}, []string{"want KEY=VALUE"}},
		{[]string{"--name", "a", "--layout", "x", "--manifest", bad}, []string{"bad.list:1:", "bad.list:2: mode", "bad.list:3:"}},
	} {
		var out bytes.Buffer
		err := Command(c.args, &out, &out)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %v, want %q", c.args, err, w)
			}
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := SourceDateEpoch(); err == nil {
		t.Error("SOURCE_DATE_EPOCH=yesterday accepted")
	}
}

// --tree takes a directory as it is (a payload made by `veil-deploy payload`), with
// normalized modes, and refuses symbolic links.
func TestTree(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "payload/bin/shim", "shim", 0o700)
	writeFile(t, dir, "payload/share/veil/image/vmlinuz", "kernel", 0o600)
	writeFile(t, dir, "payload/SHA256SUMS", "sums", 0o644)
	files, err := Tree("opt/veil-payload", filepath.Join(dir, "payload"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range files {
		got[f.Path] = fmt.Sprintf("%o %t", uint32(f.Mode), f.Dir())
	}
	want := map[string]string{
		"opt/veil-payload": "755 true", "opt/veil-payload/bin": "755 true", "opt/veil-payload/bin/shim": "755 false",
		"opt/veil-payload/share": "755 true", "opt/veil-payload/share/veil": "755 true",
		"opt/veil-payload/share/veil/image": "755 true", "opt/veil-payload/share/veil/image/vmlinuz": "644 false",
		"opt/veil-payload/SHA256SUMS": "644 false",
	}
	if !maps.Equal(got, want) {
		t.Errorf("Tree: %v, want %v", got, want)
	}
	if err := os.Symlink("/etc/shadow", filepath.Join(dir, "payload/link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Tree("opt/veil-payload", filepath.Join(dir, "payload")); err == nil || !strings.Contains(err.Error(), "link: not a regular file") {
		t.Errorf("Tree with a symbolic link: %v", err)
	}
	var out bytes.Buffer
	err = Command([]string{"--name", "x", "--layout", filepath.Join(dir, "l"), "--tree", "opt/p=" + filepath.Join(dir, "payload")}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("--tree with a symbolic link: %v", err)
	}
}
