package imagepull

import (
	"context"
	"fmt"

	"github.com/veil-runtime/veil/kbs-client/keywrap"
)

// KeyProvider unwraps the keys of encrypted layers (ocicrypt's "+encrypted" media types).
type KeyProvider interface {
	// Names are the ocicrypt key provider names whose packets it opens, in the order tried: a
	// layer's wrapped keys are in its annotation
	// "org.opencontainers.image.enc.keys.provider.<name>", base64 and comma-separated.
	Names() []string
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

// VeilProviderName is the key provider name of veil-keyprovider's documented ocicrypt
// configuration (`skopeo copy --encryption-key provider:veil:kbs:///…`); its packets are
// CoCo's, so the same key provider opens both.
const VeilProviderName = "veil"

// NewKBSKeyProvider returns the key provider of Confidential Containers' convention: each
// wrapped key is an annotation packet (JSON) whose "kid" names the key-encryption key (KEK)
// in the KBS, fetched through kbs; the layer options are sealed under that KEK with
// AES-256-GCM. See docs/imagepull.md for the exact format.
func NewKBSKeyProvider(kbs ResourceGetter) KeyProvider { return &kbsKeyProvider{kbs: kbs} }

type kbsKeyProvider struct{ kbs ResourceGetter }

// Names implements KeyProvider: CoCo's name first, then Veil's.
func (*kbsKeyProvider) Names() []string { return []string{CoCoProviderName, VeilProviderName} }

// UnwrapKey parses the packet (kbs-client/keywrap), fetches the KEK named by its kid and
// opens wrapped_data.
func (p *kbsKeyProvider) UnwrapKey(ctx context.Context, wrapped []byte) ([]byte, error) {
	pkt, err := keywrap.Parse(wrapped)
	if err != nil {
		return nil, err
	}
	kek, err := p.kbs.GetResource(ctx, pkt.KEKURI())
	if err != nil {
		return nil, fmt.Errorf("key-encryption key %s: %w", pkt.Kid, err)
	}
	defer clear(kek)
	return pkt.Open(kek)
}
