package storage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/agent/imagepull/imagepulltest"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// pushEncrypted pushes a one-layer image, the layer encrypted under kek named kid, to a
// loopback registry and returns the registry's host, the reference by tag and the digest.
func pushEncrypted(t *testing.T, kek []byte, kid string) (host, ref, digest string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "classified\n"
	if err := tw.WriteHeader(&tar.Header{Name: "secret.txt", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	add, err := imagepulltest.EncryptLayer(buf.Bytes(), imagepulltest.Wrapping{KEK: kek, Kid: kid})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON), add)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return push(t, img, "test/enc:1")
}

// TestGuestPullEncrypted: with a key provider (the KBS's, through agent/cdh) an encrypted
// image is decrypted and mounted; without one, or with a KBS that has no such key, the
// storage is refused and nothing is mounted.
func TestGuestPullEncrypted(t *testing.T) {
	needRoot(t)
	k := kbstest.NewKBS(t, true)
	kek := imagepulltest.NewKEK()
	k.Put(t, "default/key/1", kek)
	att, init := kbstest.Guest(t, kbstest.Measurement)
	hub, err := cdh.New(cdh.Config{URL: k.URL(), Attester: att, InitData: init, Retry: kbsclient.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	kp := imagepull.NewKBSKeyProvider(hub)
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		kp   imagepull.KeyProvider
		kid  string
		is   error
		want string
	}{
		{"no key provider", nil, "kbs:///default/key/1", imagepull.ErrUnsupported, "no key provider is configured"},
		{"KEK missing", kp, "kbs:///default/key/2", imagepull.ErrDecrypt, "kbs:///default/key/2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, ref, digest := pushEncrypted(t, kek, tc.kid)
			root := mountedTempDir(t)
			mp := filepath.Join(root, "containers", "c1", "rootfs")
			g := &GuestPull{Dir: root + "/images", InsecureRegistries: []string{host}, KeyProvider: tc.kp}
			undo, err := g.Mount(ctx, "c1", ref, digest, mp)
			if err == nil {
				_ = undo()
				t.Fatal("mounted")
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want %v with %q", err, tc.is, tc.want)
			}
			if mounted(t, mp) {
				t.Fatalf("%s left mounted", mp)
			}
		})
	}

	host, ref, digest := pushEncrypted(t, kek, "kbs:///default/key/1")
	root := mountedTempDir(t)
	mp := filepath.Join(root, "containers", "c1", "rootfs")
	g := &GuestPull{Dir: root + "/images", InsecureRegistries: []string{host}, KeyProvider: kp}
	undo, err := g.Mount(ctx, "c1", ref, digest, mp)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := undo(); err != nil {
			t.Error(err)
		}
	}()
	if b, err := os.ReadFile(filepath.Join(mp, "secret.txt")); err != nil || string(b) != "classified\n" {
		t.Fatalf("decrypted file: %q, %v", b, err)
	}
}
