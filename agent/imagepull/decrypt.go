package imagepull

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containers/ocicrypt/blockcipher"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations of an encrypted layer (ocicrypt).
const (
	// AnnotationKeysPrefix + provider name holds the layer's wrapped keys.
	AnnotationKeysPrefix = "org.opencontainers.image.enc.keys.provider."
	// AnnotationPubOpts holds base64 of the public options (cipher, HMAC).
	AnnotationPubOpts = "org.opencontainers.image.enc.pubopts"
)

const encryptedSuffix = "+encrypted"

// isEncrypted reports whether mt is an ocicrypt encrypted layer type.
func isEncrypted(mt types.MediaType) bool { return strings.HasSuffix(string(mt), encryptedSuffix) }

// layerCipher is what opens one encrypted layer: ocicrypt's block cipher options, with the
// layer key unwrapped.
type layerCipher struct {
	opts blockcipher.LayerBlockCipherOptions
}

// layerKey unwraps the key of an encrypted layer with the key provider. It runs before the
// blob is fetched, so a layer whose key is refused costs no download.
func layerKey(ctx context.Context, kp KeyProvider, l *Layer) (*layerCipher, error) {
	if kp == nil {
		return nil, fmt.Errorf("media type %q: encrypted layer, but no key provider is configured (the agent needs a KBS: initdata veil.toml [kbs] url): %w", l.MediaType, ErrUnsupported)
	}
	var name, b64 string
	for _, n := range kp.Names() {
		if name, b64 = AnnotationKeysPrefix+n, l.annotations[AnnotationKeysPrefix+n]; b64 != "" {
			break
		}
	}
	if b64 == "" {
		var have []string
		for k := range l.annotations {
			if strings.HasPrefix(k, AnnotationKeysPrefix) {
				have = append(have, strings.TrimPrefix(k, AnnotationKeysPrefix))
			}
		}
		want := make([]string, len(kp.Names()))
		for i, n := range kp.Names() {
			want[i] = AnnotationKeysPrefix + n
		}
		return nil, fmt.Errorf("encrypted layer has no %s annotation (key providers in the layer: %q): %w", strings.Join(want, " or "), have, ErrDecrypt)
	}
	var errs []error
	for i, part := range strings.Split(b64, ",") {
		wrapped, err := base64.StdEncoding.DecodeString(part)
		if err != nil {
			errs = append(errs, fmt.Errorf("wrapped key %d: not base64", i))
			continue
		}
		priv, err := kp.UnwrapKey(ctx, wrapped)
		if err != nil {
			errs = append(errs, fmt.Errorf("wrapped key %d: %w", i, err))
			continue
		}
		lc, err := newLayerCipher(priv, l.annotations[AnnotationPubOpts])
		clear(priv)
		if err != nil {
			return nil, fmt.Errorf("wrapped key %d: %w: %w", i, err, ErrDecrypt)
		}
		return lc, nil
	}
	return nil, fmt.Errorf("%s: %w: %w", name, errors.Join(errs...), ErrDecrypt)
}

// newLayerCipher checks the private options (JSON) and the public ones (base64 of JSON).
func newLayerCipher(privJSON []byte, pubB64 string) (*layerCipher, error) {
	var lc layerCipher
	if err := json.Unmarshal(privJSON, &lc.opts.Private); err != nil {
		return nil, fmt.Errorf("layer options: %v", err)
	}
	if len(lc.opts.Private.SymmetricKey) != 32 {
		return nil, fmt.Errorf("layer options: symkey is %d bytes, want 32", len(lc.opts.Private.SymmetricKey))
	}
	if n := len(lc.opts.Private.CipherOptions["nonce"]); n != 16 {
		return nil, fmt.Errorf("layer options: cipheroptions.nonce is %d bytes, want 16", n)
	}
	if pubB64 == "" {
		return nil, fmt.Errorf("no %s annotation", AnnotationPubOpts)
	}
	pub, err := base64.StdEncoding.DecodeString(pubB64)
	if err == nil {
		err = json.Unmarshal(pub, &lc.opts.Public)
	}
	if err != nil {
		return nil, fmt.Errorf("%s annotation: %v", AnnotationPubOpts, err)
	}
	if lc.opts.Public.CipherType != blockcipher.AES256CTR {
		return nil, fmt.Errorf("%s annotation: cipher %q, want %s", AnnotationPubOpts, lc.opts.Public.CipherType, blockcipher.AES256CTR)
	}
	if len(lc.opts.Public.Hmac) != 32 {
		return nil, fmt.Errorf("%s annotation: hmac is %d bytes, want 32", AnnotationPubOpts, len(lc.opts.Public.Hmac))
	}
	return &lc, nil
}

// reader returns the plaintext of the encrypted stream r (ocicrypt's AES-256-CTR with an
// HMAC-SHA256 that is checked when r reaches its end), and forgets the key.
func (lc *layerCipher) reader(r io.Reader) (io.Reader, error) {
	h, err := blockcipher.NewLayerBlockCipherHandler()
	if err != nil {
		return nil, err
	}
	pr, _, err := h.Decrypt(r, lc.opts)
	clear(lc.opts.Private.SymmetricKey) // the cipher and the HMAC hold their own copies
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrDecrypt)
	}
	return &hmacReader{r: pr}, nil
}

// errHMAC replaces ocicrypt's HMAC error, whose text holds raw bytes.
var errHMAC = fmt.Errorf("decrypt: the ciphertext fails its HMAC-SHA256 (%s): %w", blockcipher.AES256CTR, ErrDecrypt)

// hmacReader passes reads through, turning ocicrypt's HMAC failure into errHMAC; other
// errors (the blob's own reader) are unchanged.
type hmacReader struct{ r io.Reader }

func (h *hmacReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if err != nil && err != io.EOF && strings.HasPrefix(err.Error(), "could not properly decrypt byte stream") {
		err = errHMAC
	}
	return n, err
}
