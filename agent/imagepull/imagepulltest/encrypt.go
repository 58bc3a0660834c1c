// Package imagepulltest encrypts image layers the way Confidential Containers' tools do, for
// the tests of agent/imagepull and of the agent's guest pull (unit and VM tests): ocicrypt's
// AES-256-CTR + HMAC-SHA256 layer cipher (its blockcipher package), the layer options sealed
// under a key-encryption key with AES-256-GCM in coco-keyprovider's attestation-agent
// annotation packet. Tests only: the agent decrypts, it never encrypts.
package imagepulltest

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containers/ocicrypt/blockcipher"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/kbs-client/keywrap"
)

// EncryptedMediaType is the media type of a gzip layer encrypted by ocicrypt.
const EncryptedMediaType types.MediaType = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"

// Layer is an encrypted layer as a registry serves it: the ciphertext is the blob, the
// diff_id is the plain tar's.
type Layer struct {
	CipherText []byte
	Diff       v1.Hash
	Type       types.MediaType
}

// Digest implements v1.Layer.
func (l *Layer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.CipherText))
	return h, err
}

// DiffID implements v1.Layer.
func (l *Layer) DiffID() (v1.Hash, error) { return l.Diff, nil }

// Compressed implements v1.Layer.
func (l *Layer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.CipherText)), nil
}

// Uncompressed implements v1.Layer: an encrypted layer has no plain form here.
func (l *Layer) Uncompressed() (io.ReadCloser, error) { return nil, errors.New("encrypted") }

// Size implements v1.Layer.
func (l *Layer) Size() (int64, error) { return int64(len(l.CipherText)), nil }

// MediaType implements v1.Layer.
func (l *Layer) MediaType() (types.MediaType, error) { return l.Type, nil }

// Wrapping says how a layer's key annotation is written.
type Wrapping struct {
	// KEK is the AES-256-GCM key-encryption key (32 bytes), the KBS resource named by Kid.
	KEK []byte
	// Kid is the KEK's URI, kbs:///repo/type/tag.
	Kid string
	// Packet, when set, edits the annotation packet before it is encoded (malformed cases).
	Packet func(map[string]any)
}

// EncryptLayer gzips and encrypts a tar as ocicrypt does and wraps the layer options as
// coco-keyprovider does: the returned addendum carries the encrypted layer, its media type
// and its two annotations (pubopts and the attestation-agent key packet).
func EncryptLayer(tarball []byte, w Wrapping) (mutate.Addendum, error) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(tarball); err != nil {
		return mutate.Addendum{}, err
	}
	if err := zw.Close(); err != nil {
		return mutate.Addendum{}, err
	}
	h, err := blockcipher.NewLayerBlockCipherHandler()
	if err != nil {
		return mutate.Addendum{}, err
	}
	r, fin, err := h.Encrypt(bytes.NewReader(gz.Bytes()), blockcipher.AES256CTR)
	if err != nil {
		return mutate.Addendum{}, err
	}
	ct, err := io.ReadAll(r)
	if err != nil {
		return mutate.Addendum{}, err
	}
	opts, err := fin()
	if err != nil {
		return mutate.Addendum{}, err
	}
	sum := sha256.Sum256(gz.Bytes())
	opts.Private.Digest = digest.Digest("sha256:" + hex.EncodeToString(sum[:]))
	priv, err := json.Marshal(opts.Private)
	if err != nil {
		return mutate.Addendum{}, err
	}
	pub, err := json.Marshal(opts.Public)
	if err != nil {
		return mutate.Addendum{}, err
	}
	// Sealed under a placeholder kid, then given w.Kid as it is, so that tests can name
	// malformed kids.
	sealed, err := keywrap.Seal(w.KEK, "kbs:///test/placeholder/0", priv)
	if err != nil {
		return mutate.Addendum{}, fmt.Errorf("kek: %w", err)
	}
	var pkt map[string]any
	if err := json.Unmarshal(sealed, &pkt); err != nil {
		return mutate.Addendum{}, err
	}
	pkt["kid"] = w.Kid
	if w.Packet != nil {
		w.Packet(pkt)
	}
	pj, err := json.Marshal(pkt)
	if err != nil {
		return mutate.Addendum{}, err
	}
	diff := sha256.Sum256(tarball)
	return mutate.Addendum{
		Layer:     &Layer{CipherText: ct, Diff: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diff[:])}, Type: EncryptedMediaType},
		MediaType: EncryptedMediaType,
		Annotations: map[string]string{
			imagepull.AnnotationKeysPrefix + imagepull.CoCoProviderName: base64.StdEncoding.EncodeToString(pj),
			imagepull.AnnotationPubOpts:                                 base64.StdEncoding.EncodeToString(pub),
		},
	}, nil
}

// NewKEK returns a random 32-byte key-encryption key.
func NewKEK() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}
