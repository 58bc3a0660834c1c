package genpolicy_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/veil-runtime/veil/policy/genpolicy"
)

// ent is one entry of a test layer: a file (body), a directory (dir), or a symbolic or hard
// link (link, hard).
type ent struct {
	name, body, link string
	dir, hard        bool
}

func file(name, body string) ent  { return ent{name: name, body: body} }
func symlink(name, to string) ent { return ent{name: name, link: to} }

// tarLayer makes a gzip layer of entries.
func tarLayer(t *testing.T, entries ...ent) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case e.dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.hard:
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.link, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// encryptedLayer is a layer genpolicy cannot read: ocicrypt's media type over bytes that are
// not a tar.
func encryptedLayer() v1.Layer {
	return static.NewLayer([]byte("ciphertext, not a tar"), "application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
}

// pushLayers pushes an OCI image of layers (bottom first) and config cfg; it returns its
// reference.
func (r *testRegistry) pushLayers(repo string, cfg v1.Config, layers ...v1.Layer) string {
	r.t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var err error
	for _, l := range layers {
		mt, _ := l.MediaType()
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: mt}); err != nil {
			r.t.Fatal(err)
		}
	}
	if img, err = mutate.Config(img, cfg); err != nil {
		r.t.Fatal(err)
	}
	ref, _ := r.push(repo, img)
	return ref
}

// RegistryResolver reads /etc/passwd and /etc/group from the layers as the flattened root
// file system has them.
func TestRegistryResolverUserFiles(t *testing.T) {
	r := newRegistry(t)
	base := func() v1.Layer {
		return tarLayer(t, ent{name: "etc/", dir: true}, file("etc/passwd", "p0"), file("etc/group", "g0"), file("etc/shadow", "s"))
	}
	big := strings.Repeat("x", 10<<20+1)
	for i, tc := range []struct {
		name          string
		layers        []v1.Layer
		passwd, group string // "-" for none
		unknown       string
		wantErr       string
	}{
		{"one layer", []v1.Layer{base()}, "p0", "g0", "", ""},
		{"top layer wins, lower layer fills in", []v1.Layer{base(), tarLayer(t, file("./etc/passwd", "p1"))}, "p1", "g0", "", ""},
		{"whiteout", []v1.Layer{base(), tarLayer(t, file("etc/.wh.group", ""))}, "p0", "-", "", ""},
		{"whiteout of etc", []v1.Layer{base(), tarLayer(t, file(".wh.etc", ""))}, "-", "-", "", ""},
		{"opaque etc keeps the layer's own files", []v1.Layer{base(),
			tarLayer(t, ent{name: "etc/", dir: true}, file("etc/.wh..wh..opq", ""), file("etc/group", "g2"))}, "-", "g2", "", ""},
		{"no files at all", []v1.Layer{tarLayer(t, file("bin/sh", "x"))}, "-", "-", "", ""},
		{"relative symbolic link", []v1.Layer{
			tarLayer(t, file("usr/lib/passwd", "nix"), file("etc/group", "g0")),
			tarLayer(t, symlink("etc/passwd", "../usr/lib/passwd"))}, "nix", "g0", "", ""},
		{"absolute link climbing out stays in the image", []v1.Layer{
			tarLayer(t, file("usr/passwd", "abs"), symlink("etc/passwd", "/../../usr/passwd"))}, "abs", "-", "", ""},
		{"etc is a link", []v1.Layer{tarLayer(t, file("private/etc/passwd", "mac"), file("private/etc/group", "macg"),
			symlink("etc", "private/etc"))}, "mac", "macg", "", ""},
		{"hard link", []v1.Layer{tarLayer(t, file("usr/share/passwd", "hl"), ent{name: "etc/passwd", link: "usr/share/passwd", hard: true})},
			"hl", "-", "", ""},
		{"link loop", []v1.Layer{tarLayer(t, symlink("etc/passwd", "passwd2"), symlink("etc/passwd2", "passwd"))},
			"", "", "", "more than 8 symbolic links"},
		{"directory in place of the file", []v1.Layer{tarLayer(t, ent{name: "etc/passwd/", dir: true})}, "", "", "", "not a regular file"},
		{"too large", []v1.Layer{tarLayer(t, file("etc/passwd", big))}, "", "", "", "larger than 10485760 bytes"},
		{"encrypted layer in the way", []v1.Layer{encryptedLayer(), tarLayer(t, file("etc/passwd", "p1"))}, "-", "-",
			"layer 0 is encrypted (application/vnd.oci.image.layer.v1.tar+gzip+encrypted)", ""},
		{"encrypted layer below both files", []v1.Layer{encryptedLayer(), base()}, "p0", "g0", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := r.pushLayers("files:"+strconv.Itoa(i), v1.Config{Cmd: []string{"/x"}}, tc.layers...)
			img, err := (&genpolicy.RegistryResolver{PlainHTTPLoopback: true}).Resolve(context.Background(), ref)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			show := func(b []byte) string {
				if b == nil {
					return "-"
				}
				return string(b)
			}
			if show(img.Passwd) != tc.passwd || show(img.Group) != tc.group || img.UserFilesUnknown != tc.unknown {
				t.Fatalf("passwd %q group %q unknown %q, want %q %q %q", show(img.Passwd), show(img.Group),
					img.UserFilesUnknown, tc.passwd, tc.group, tc.unknown)
			}
		})
	}
}

// The whole way through a registry: a busybox-like image's user database decides the
// container's gid and supplementary groups; an encrypted image gives a warning instead.
func TestGenerateUserFromLayers(t *testing.T) {
	r := newRegistry(t)
	bb := r.pushLayers("bb:1", v1.Config{Cmd: []string{"sh"}, User: "app"},
		tarLayer(t, file("etc/passwd", busyboxPasswd), file("etc/group", "stale")),
		tarLayer(t, file("etc/group", busyboxGroup)))
	enc := r.pushLayers("enc:1", v1.Config{Cmd: []string{"/app"}, User: "1000"}, encryptedLayer())
	pause := r.pushLayers("pause:1", v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}, tarLayer(t, file("pause", "x")))
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = pause
	y := "kind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {fsGroup: 2000}\n  containers:\n" +
		"  - {name: bb, image: " + bb + "}\n  - {name: enc, image: " + enc + "}\n"
	res, err := genpolicy.Generate(context.Background(), []byte(y), genpolicy.Options{
		Resolver: &genpolicy.RegistryResolver{PlainHTTPLoopback: true}, Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	s := entry(t, res, "bb").Security
	if *s.UID != 1000 || *s.GID != 1000 || !slices.Equal(s.AdditionalGids, []int64{50, 1000, 2000}) {
		t.Fatalf("bb: uid %s gid %s additional %v", idString(s.UID), idString(s.GID), s.AdditionalGids)
	}
	s = entry(t, res, "enc").Security
	if *s.UID != 1000 || s.GID != nil || !slices.Equal(s.AdditionalGids, []int64{2000}) {
		t.Fatalf("enc: uid %s gid %s additional %v", idString(s.UID), idString(s.GID), s.AdditionalGids)
	}
	s = entry(t, res, genpolicy.SandboxEntry).Security
	if *s.UID != 65535 || *s.GID != 65535 || !slices.Equal(s.AdditionalGids, []int64{65535}) {
		t.Fatalf("sandbox: uid %s gid %s additional %v", idString(s.UID), idString(s.GID), s.AdditionalGids)
	}
	if len(res.Warnings) != 1 || !strings.HasPrefix(res.Warnings[0], "Pod/p: container enc: image "+enc+": layer 0 is encrypted") {
		t.Fatalf("warnings %q", res.Warnings)
	}
}
