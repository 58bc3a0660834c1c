package imagepull_test

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/containers/ocicrypt/blockcipher"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/agent/cdh/cdhtest"
	"github.com/veil-runtime/veil/agent/imagepull"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// encLayer is an encrypted layer as a registry serves it: the ciphertext is the blob, the
// diff_id is the plain tar's.
type encLayer struct {
	ct     []byte
	diffID v1.Hash
	mt     types.MediaType
}

func (l *encLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.ct))
	return h, err
}
func (l *encLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *encLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.ct)), nil
}
func (l *encLayer) Uncompressed() (io.ReadCloser, error) { return nil, errors.New("encrypted") }
func (l *encLayer) Size() (int64, error)                 { return int64(len(l.ct)), nil }
func (l *encLayer) MediaType() (types.MediaType, error)  { return l.mt, nil }

// wrapping says how the test writes a layer's key annotation.
type wrapping struct {
	kek    []byte // AES-256-GCM key-encryption key
	kid    string
	packet func(map[string]any) // edits the packet before it is encoded (malformed cases)
}

// encryptLayer compresses and encrypts a tar as ocicrypt does (AES-256-CTR + HMAC-SHA256,
// ocicrypt's blockcipher) and wraps the layer options as coco-keyprovider does: an
// attestation-agent annotation packet sealed under the KEK with AES-256-GCM.
func encryptLayer(t testing.TB, tarball []byte, w wrapping) mutate.Addendum {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarball)
	zw.Close()
	h, err := blockcipher.NewLayerBlockCipherHandler()
	if err != nil {
		t.Fatal(err)
	}
	r, fin, err := h.Encrypt(bytes.NewReader(gz.Bytes()), blockcipher.AES256CTR)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := fin()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(gz.Bytes())
	opts.Private.Digest = digest.Digest("sha256:" + hexOf(sum[:]))
	priv, _ := json.Marshal(opts.Private)
	pub, _ := json.Marshal(opts.Public)

	block, _ := aes.NewCipher(w.kek)
	gcm, _ := cipher.NewGCM(block)
	iv := make([]byte, 12)
	rand.Read(iv)
	pkt := map[string]any{
		"kid":          w.kid,
		"wrapped_data": base64.StdEncoding.EncodeToString(gcm.Seal(nil, iv, priv, nil)),
		"iv":           base64.StdEncoding.EncodeToString(iv),
		"wrap_type":    "A256GCM",
	}
	if w.packet != nil {
		w.packet(pkt)
	}
	pj, _ := json.Marshal(pkt)
	diff := sha256.Sum256(tarball)
	return mutate.Addendum{
		Layer:     &encLayer{ct: ct, diffID: v1.Hash{Algorithm: "sha256", Hex: hexOf(diff[:])}, mt: "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"},
		MediaType: "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
		Annotations: map[string]string{
			imagepull.AnnotationKeysPrefix + "attestation-agent": base64.StdEncoding.EncodeToString(pj),
			imagepull.AnnotationPubOpts:                          base64.StdEncoding.EncodeToString(pub),
		},
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
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

func newKEK() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func hub(t testing.TB, k *cdhtest.KBS, measurement [48]byte) *cdh.Hub {
	t.Helper()
	att, init := cdhtest.Guest(t, measurement)
	h, err := cdh.New(cdh.Config{URL: k.URL(), Attester: att, InitData: init, Retry: kbsclient.Retry{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}
