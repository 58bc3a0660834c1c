package imagepull

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/veil-runtime/veil/attestation/kbs/protocol"
)

// KeyProvider unwraps the keys of encrypted layers (ocicrypt's "+encrypted" media types).
type KeyProvider interface {
	// Name is ocicrypt's key provider name: a layer's wrapped keys are in its annotation
	// "org.opencontainers.image.enc.keys.provider.<Name>", base64 and comma-separated.
	Name() string
	// UnwrapKey opens one wrapped key (base64-decoded) and returns ocicrypt's private layer
	// options: the JSON of blockcipher.PrivateLayerBlockCipherOptions (symkey,
	// cipheroptions.nonce, digest).
	UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error)
}

// ResourceGetter fetches a secret from the KBS by its kbs:///repo/type/tag URI (*cdh.Hub).
type ResourceGetter interface {
	GetResource(ctx context.Context, uri string) ([]byte, error)
}

// CoCoProviderName is the key provider name that Confidential Containers' coco-keyprovider
// writes and its confidential data hub reads.
const CoCoProviderName = "attestation-agent"

// NewKBSKeyProvider returns the key provider of Confidential Containers' convention: each
// wrapped key is an annotation packet (JSON) whose "kid" names the key-encryption key (KEK)
// in the KBS, fetched through kbs; the layer options are sealed under that KEK with
// AES-256-GCM. See docs/imagepull.md for the exact format.
func NewKBSKeyProvider(kbs ResourceGetter) KeyProvider { return &kbsKeyProvider{kbs: kbs} }

type kbsKeyProvider struct{ kbs ResourceGetter }

func (*kbsKeyProvider) Name() string { return CoCoProviderName }

// annotationPacket is CoCo's AnnotationPacket: version 1 has kid, wrapped_data, iv and
// wrap_type; version 2 ("0.1.0") adds version, provider, provider_settings and annotations,
// all optional for the "kbs" provider.
type annotationPacket struct {
	Version          *string         `json:"version"`
	Kid              string          `json:"kid"`
	WrappedData      string          `json:"wrapped_data"`
	IV               *string         `json:"iv"`
	WrapType         *string         `json:"wrap_type"`
	Provider         *string         `json:"provider"`
	ProviderSettings json.RawMessage `json:"provider_settings"`
	Annotations      json.RawMessage `json:"annotations"`
}

// wrapA256GCM is the only wrap type accepted: AES-256-GCM, 12-byte IV, the 16-byte tag
// appended to wrapped_data, no additional data.
const wrapA256GCM = "A256GCM"

// errPacket marks a malformed annotation packet.
var errPacket = errors.New("malformed attestation-agent annotation packet")

// UnwrapKey parses the packet, fetches the KEK named by kid and opens wrapped_data.
func (p *kbsKeyProvider) UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error) {
	pkt, err := parsePacket(wrapped)
	if err != nil {
		return nil, err
	}
	uri, err := kidURI(pkt.Kid)
	if err != nil {
		return nil, err
	}
	sealed, err := base64.StdEncoding.DecodeString(pkt.WrappedData)
	if err != nil || len(sealed) < 16 {
		return nil, fmt.Errorf("%w: wrapped_data is not base64 of a sealed key", errPacket)
	}
	iv, err := base64.StdEncoding.DecodeString(*pkt.IV)
	if err != nil || len(iv) != 12 {
		return nil, fmt.Errorf("%w: iv must be base64 of 12 bytes for %s", errPacket, wrapA256GCM)
	}
	kek, err := p.kbs.GetResource(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: %w", pkt.Kid, err)
	}
	defer clear(kek)
	if len(kek) != 32 {
		return nil, fmt.Errorf("key-encryption key %s is %d bytes, want 32 for %s", pkt.Kid, len(kek), wrapA256GCM)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	opts, err := gcm.Open(nil, iv, sealed, nil)
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s does not open the layer key (wrong key, or the annotation was altered)", pkt.Kid)
	}
	return opts, nil
}

// parsePacket decodes and checks an annotation packet (version 1 or 2, provider kbs).
func parsePacket(b []byte) (*annotationPacket, error) {
	var pkt annotationPacket
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&pkt); err != nil {
		return nil, fmt.Errorf("%w: %v", errPacket, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", errPacket)
	}
	switch {
	case pkt.Version != nil && *pkt.Version != "0.1.0":
		return nil, fmt.Errorf("%w: version %q (want 0.1.0)", errPacket, *pkt.Version)
	case pkt.Provider != nil && *pkt.Provider != "kbs":
		return nil, fmt.Errorf("%w: provider %q: only kbs is supported (no KMS plugins)", errPacket, *pkt.Provider)
	case pkt.Kid == "":
		return nil, fmt.Errorf("%w: no kid", errPacket)
	case pkt.WrappedData == "":
		return nil, fmt.Errorf("%w: no wrapped_data", errPacket)
	case pkt.IV == nil:
		return nil, fmt.Errorf("%w: no iv", errPacket)
	case pkt.WrapType == nil:
		return nil, fmt.Errorf("%w: no wrap_type", errPacket)
	case *pkt.WrapType != wrapA256GCM:
		return nil, fmt.Errorf("%w: wrap_type %q: only %s is supported", errPacket, *pkt.WrapType, wrapA256GCM)
	}
	return &pkt, nil
}

// kidURI turns a kid into the kbs:///repo/type/tag URI to fetch. A KBS address in the kid
// (kbs://host:port/...) is ignored, as CoCo's data hub does: the KEK always comes from the
// KBS of the measured configuration, never from one the image names.
func kidURI(kid string) (string, error) {
	u, err := url.Parse(kid)
	if err != nil || u.Scheme != "kbs" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: kid %q is not kbs://[<kbs>]/<repository>/<type>/<tag>", errPacket, kid)
	}
	p, err := protocol.ParseResourcePath(strings.TrimPrefix(u.EscapedPath(), "/"))
	if err != nil {
		return "", fmt.Errorf("%w: kid %q: %v", errPacket, kid, err)
	}
	return p.URI(), nil
}
