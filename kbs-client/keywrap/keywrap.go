// Package keywrap is the one home of the annotation packet that wraps an encrypted image
// layer's key under a key-encryption key (KEK) held by a KBS: Confidential Containers'
// AnnotationPacket, which coco-keyprovider and veil-keyprovider write into a layer's
// "org.opencontainers.image.enc.keys.provider.<name>" annotation and which Veil's agent and
// CoCo's confidential data hub open after attestation.
//
//	{"kid":"kbs:///default/image-kek/app","wrapped_data":"<base64>","iv":"<base64>","wrap_type":"A256GCM"}
//
// wrapped_data is ocicrypt's private layer options (the JSON of
// blockcipher.PrivateLayerBlockCipherOptions) sealed with AES-256-GCM under the 32-byte KEK
// named by kid, with a 12-byte IV and no additional data; the 16-byte tag is appended.
// Version 2 packets ("version":"0.1.0", "provider":"kbs", provider_settings, annotations) are
// read too. The package has no I/O: the caller fetches or keeps the KEK.
package keywrap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// WrapA256GCM is the only wrap type: AES-256-GCM, 12-byte IV, tag appended, no AAD.
const WrapA256GCM = "A256GCM"

// KEKSize is the size of a key-encryption key for WrapA256GCM.
const KEKSize = 32

// ErrPacket is wrapped by every refusal of a malformed packet.
var ErrPacket = errors.New("malformed attestation-agent annotation packet")

// ErrKey is wrapped when a KEK does not open a packet (wrong key, or the packet was altered).
var ErrKey = errors.New("the key-encryption key does not open the layer key")

// Packet is a parsed annotation packet.
type Packet struct {
	Version          *string         `json:"version,omitempty"`
	Kid              string          `json:"kid"`
	WrappedData      string          `json:"wrapped_data"`
	IV               *string         `json:"iv,omitempty"`
	WrapType         *string         `json:"wrap_type,omitempty"`
	Provider         *string         `json:"provider,omitempty"`
	ProviderSettings json.RawMessage `json:"provider_settings,omitempty"`
	Annotations      json.RawMessage `json:"annotations,omitempty"`
}

// Parse decodes and checks a packet: one JSON object, version 1 or 2, provider kbs, a kid
// that is a KBS resource URI, wrapped data and an IV of the right shape, wrap type A256GCM.
func Parse(b []byte) (*Packet, error) {
	var p Packet
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPacket, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrPacket)
	}
	switch {
	case p.Version != nil && *p.Version != "0.1.0":
		return nil, fmt.Errorf("%w: version %q (want 0.1.0)", ErrPacket, *p.Version)
	case p.Provider != nil && *p.Provider != "kbs":
		return nil, fmt.Errorf("%w: provider %q: only kbs is supported (no KMS plugins)", ErrPacket, *p.Provider)
	case p.Kid == "":
		return nil, fmt.Errorf("%w: no kid", ErrPacket)
	case p.WrappedData == "":
		return nil, fmt.Errorf("%w: no wrapped_data", ErrPacket)
	case p.IV == nil:
		return nil, fmt.Errorf("%w: no iv", ErrPacket)
	case p.WrapType == nil:
		return nil, fmt.Errorf("%w: no wrap_type", ErrPacket)
	case *p.WrapType != WrapA256GCM:
		return nil, fmt.Errorf("%w: wrap_type %q: only %s is supported", ErrPacket, *p.WrapType, WrapA256GCM)
	}
	if _, err := KidURI(p.Kid); err != nil {
		return nil, err
	}
	if s, err := base64.StdEncoding.DecodeString(p.WrappedData); err != nil || len(s) < 16 {
		return nil, fmt.Errorf("%w: wrapped_data is not base64 of a sealed key", ErrPacket)
	}
	if iv, err := base64.StdEncoding.DecodeString(*p.IV); err != nil || len(iv) != 12 {
		return nil, fmt.Errorf("%w: iv must be base64 of 12 bytes for %s", ErrPacket, WrapA256GCM)
	}
	return &p, nil
}

// KEKURI is the kbs:///repo/type/tag URI of the packet's KEK (KidURI of its kid).
func (p *Packet) KEKURI() string {
	u, _ := KidURI(p.Kid) // checked by Parse
	return u
}

// Open unwraps the layer options with kek. The caller clears kek when done.
func (p *Packet) Open(kek []byte) ([]byte, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("key-encryption key %s is %d bytes, want %d for %s", p.Kid, len(kek), KEKSize, WrapA256GCM)
	}
	sealed, _ := base64.StdEncoding.DecodeString(p.WrappedData) // checked by Parse
	iv, _ := base64.StdEncoding.DecodeString(*p.IV)
	gcm, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	opts, err := gcm.Open(nil, iv, sealed, nil)
	if err != nil {
		return nil, fmt.Errorf("%w %s (wrong key, or the annotation was altered)", ErrKey, p.Kid)
	}
	return opts, nil
}

// Seal wraps ocicrypt's private layer options under kek, named kid (a kbs:/// URI), with a
// fresh random IV, and returns the packet's JSON (version 1, as coco-keyprovider writes it).
func Seal(kek []byte, kid string, opts []byte) ([]byte, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("key-encryption key %s is %d bytes, want %d for %s", kid, len(kek), KEKSize, WrapA256GCM)
	}
	if _, err := KidURI(kid); err != nil {
		return nil, err
	}
	gcm, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	iv := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	ivs, wt := base64.StdEncoding.EncodeToString(iv), WrapA256GCM
	return json.Marshal(Packet{
		Kid:         kid,
		WrappedData: base64.StdEncoding.EncodeToString(gcm.Seal(nil, iv, opts, nil)),
		IV:          &ivs,
		WrapType:    &wt,
	})
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// KidURI turns a kid into the kbs:///repo/type/tag URI to fetch. A KBS address in the kid
// (kbs://host:port/...) is dropped, as CoCo's data hub does: the KEK always comes from the
// KBS of the guest's measured configuration, never from one the image names.
func KidURI(kid string) (string, error) {
	u, err := url.Parse(kid)
	if err != nil || u.Scheme != "kbs" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: kid %q is not kbs://[<kbs>]/<repository>/<type>/<tag>", ErrPacket, kid)
	}
	p, err := protocol.ParseResourcePath(strings.TrimPrefix(u.EscapedPath(), "/"))
	if err != nil {
		return "", fmt.Errorf("%w: kid %q: %v", ErrPacket, kid, err)
	}
	return p.URI(), nil
}
