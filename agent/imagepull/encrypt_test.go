package imagepull_test

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/agent/imagepull/imagepulltest"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// encLayer is an encrypted layer as a registry serves it (imagepulltest.Layer).
type encLayer = imagepulltest.Layer

// wrapping says how the test writes a layer's key annotation.
type wrapping struct {
	kek    []byte // AES-256-GCM key-encryption key
	kid    string
	packet func(map[string]any) // edits the packet before it is encoded (malformed cases)
}

// encryptLayer compresses and encrypts a tar as ocicrypt does and wraps the layer options as
// coco-keyprovider does (imagepulltest.EncryptLayer).
func encryptLayer(t testing.TB, tarball []byte, w wrapping) mutate.Addendum {
	t.Helper()
	a, err := imagepulltest.EncryptLayer(tarball, imagepulltest.Wrapping{KEK: w.kek, Kid: w.kid, Packet: w.packet})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// encryptedImage is an OCI image for linux/amd64: a plain base layer under an encrypted one.
func encryptedImage(t testing.TB, w wrapping, edit func(*mutate.Addendum)) v1.Image {
	t.Helper()
	add := encryptLayer(t, tarBytes(t, dir("etc"), file("etc/secret.conf", "password=hunter2"), file("app", "binary")), w)
	if edit != nil {
		edit(&add)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer(t, file("base", "plain")), MediaType: types.OCILayer}, add)
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
	return img
}

func newKEK() []byte { return imagepulltest.NewKEK() }

func hub(t testing.TB, k *kbstest.KBS, measurement [48]byte) *cdh.Hub {
	t.Helper()
	att, init := kbstest.Guest(t, measurement)
	h, err := cdh.New(cdh.Config{URL: k.URL(), Attester: att, InitData: init, Retry: kbsclient.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}
