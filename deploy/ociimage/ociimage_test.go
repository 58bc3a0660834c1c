package ociimage

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeFile writes data to dir/name with mode and returns its path.
func writeFile(t *testing.T, dir, name, data string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// kbsSpec is shaped like `make images`' veil-kbs image, with a stand-in binary.
func kbsSpec(t *testing.T, dir string) Spec {
	bin := writeFile(t, dir, "veil-kbs", "#!stand-in for the static veil-kbs\n", 0o755)
	return Spec{
		Name: "veil-kbs:dev",
		Files: []File{
			{Path: "/usr/local/bin/veil-kbs", Mode: 0o755, Source: bin},
			{Path: "tmp", Mode: 0o777 | fs.ModeSticky},
		},
		Entrypoint: []string{"/usr/local/bin/veil-kbs"},
		User:       "65532:65532",
		Labels:     map[string]string{"org.opencontainers.image.source": "https://github.com/veil-runtime/veil"},
	}
}

// tarEntry is one entry of a tar stream with its contents.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr, data})
	}
}

// layerEntries returns the entries of the image's only layer.
func layerEntries(t *testing.T, img v1.Image) []tarEntry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s", mt)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return readTar(t, rc)
}

// Two builds of the same inputs give the same digest and the same bytes (layout and
// archive), whatever the source files' own times and owners; the stamped time changes it.
func TestReproducible(t *testing.T) {
	dir := t.TempDir()
	spec := kbsSpec(t, dir)
	a, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Write(filepath.Join(dir, "a"), filepath.Join(dir, "a.oci.tar")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(spec.Files[0].Source, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(filepath.Join(dir, "b"), filepath.Join(dir, "b.oci.tar")); err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Fatalf("two builds: %s and %s", a.Digest, b.Digest)
	}
	ta, _ := os.ReadFile(filepath.Join(dir, "a.oci.tar"))
	tb, _ := os.ReadFile(filepath.Join(dir, "b.oci.tar"))
	if len(ta) == 0 || !bytes.Equal(ta, tb) {
		t.Fatal("two archives of the same image differ")
	}
	spec.Created = time.Unix(1700000000, 0)
	c, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if c.Digest == a.Digest {
		t.Fatal("another SOURCE_DATE_EPOCH gave the same digest")
	}
}

// The layout reads back with go-containerregistry's layout package: one image, named by
// both annotations, OCI media types, the config and a layer of sorted entries owned by 0:0.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	spec := kbsSpec(t, dir)
	spec.Files = append(spec.Files, File{Path: "usr/local/bin/suid", Mode: fs.ModeSetuid | 0o755, Source: spec.Files[0].Source})
	spec.Env = []string{"A=b"}
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layout")
	if err := img.WriteLayout(out); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index: %+v, %v", im, err)
	}
	desc := im.Manifests[0]
	want := "docker.io/library/veil-kbs:dev"
	if desc.Digest != img.Digest || desc.Annotations["org.opencontainers.image.ref.name"] != want ||
		desc.Annotations[ContainerdNameAnnotation] != want || desc.Platform.String() != "linux/amd64" {
		t.Fatalf("index descriptor: %+v", desc)
	}
	got, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := got.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	m, _ := got.Manifest()
	if m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("config media type %s", m.Config.MediaType)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Equal(time.Unix(0, 0)) ||
		!slices.Equal(c.Entrypoint, []string{"/usr/local/bin/veil-kbs"}) || c.User != "65532:65532" ||
		!slices.Equal(c.Env, []string{DefaultPath, "A=b"}) || c.Labels["org.opencontainers.image.source"] == "" {
		t.Errorf("config: %+v", cf)
	}
	var names []string
	modes := map[string]int64{}
	for _, e := range layerEntries(t, got) {
		h := e.hdr
		names = append(names, h.Name)
		modes[h.Name] = h.Mode
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d %q:%q, time %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		if h.Name == "usr/local/bin/veil-kbs" && string(e.data) != "#!stand-in for the static veil-kbs\n" {
			t.Errorf("veil-kbs: %q", e.data)
		}
	}
	wantNames := []string{"tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/suid", "usr/local/bin/veil-kbs"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("entries %q, want %q", names, wantNames)
	}
	for name, mode := range map[string]int64{"tmp/": 0o1777, "usr/": 0o755, "usr/local/bin/suid": 0o4755, "usr/local/bin/veil-kbs": 0o755} {
		if modes[name] != mode {
			t.Errorf("%s: mode %o, want %o", name, modes[name], mode)
		}
	}
}

// A payload directory gets a SHA256SUMS that sha256sum -c accepts once the layer is unpacked.
func TestChecksums(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{
		Name: "veil-installer:dev",
		Files: []File{
			{Path: "usr/local/bin/veil-deploy", Mode: 0o755, Source: writeFile(t, dir, "deploy", "installer", 0o755)},
			{Path: "opt/veil-payload/bin/containerd-shim-veil-v2", Mode: 0o755, Source: writeFile(t, dir, "shim", "shim", 0o755)},
			{Path: "opt/veil-payload/share/veil/image/vmlinuz", Mode: 0o644, Source: writeFile(t, dir, "vmlinuz", "kernel", 0o644)},
			{Path: "opt/veil-payload/share/defaults/veil/configuration.toml", Mode: 0o644, Source: writeFile(t, dir, "c.toml", "[x]\n", 0o644)},
		},
		Checksums: []string{"opt/veil-payload"},
	}
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	var sums []byte
	for _, e := range layerEntries(t, img.Image) {
		p := filepath.Join(root, e.hdr.Name)
		if e.hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, e.data, 0o644); err != nil {
			t.Fatal(err)
		}
		if e.hdr.Name == "opt/veil-payload/SHA256SUMS" {
			sums = e.data
		}
	}
	var paths []string
	for _, line := range strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n") {
		if len(line) < 67 || line[64:66] != "  " {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		paths = append(paths, line[66:])
	}
	if !slices.Equal(paths, []string{"bin/containerd-shim-veil-v2", "share/defaults/veil/configuration.toml", "share/veil/image/vmlinuz"}) {
		t.Errorf("SHA256SUMS lists %q", paths)
	}
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Fatal("sha256sum not installed: apt-get install coreutils")
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", SumsFile)
	cmd.Dir = filepath.Join(root, "opt/veil-payload")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
}
