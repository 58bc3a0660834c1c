package imagesig

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	sigsig "github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/veil-runtime/veil/policy/imagepolicy"
)

// Cosign's names for its signature artifacts.
const (
	// SimpleSigningMediaType is the media type of a signature manifest's payload layers.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation holds a payload layer's base64 signature.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
)

// Bounds on what a registry can make the guest read for signatures.
const (
	maxSignatures   = 32
	maxPayloadBytes = 64 << 10
)

type namedRef = reference.Named

// sigTag is cosign's signature tag for pin: sha256-<hex>.sig.
func sigTag(pin v1.Hash) string { return pin.Algorithm + "-" + pin.Hex + ".sig" }

// signature is one cosign signature as fetched: not yet verified.
type signature struct {
	payload []byte
	sig     []byte
}

// fetchSignatures reads the signature manifest of pin in ref's repository and its payload
// layers. A missing tag is no signature (nil, nil).
func fetchSignatures(ref name.Reference, pin v1.Hash, opts []remote.Option) ([]signature, error) {
	tag := ref.Context().Tag(sigTag(pin))
	desc, err := remote.Get(tag, opts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: fetch signature manifest %s: %w", ErrNoSignature, tag, err)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("%w: signature manifest %s: %w", ErrNoSignature, tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%w: signature manifest %s: %w", ErrNoSignature, tag, err)
	}
	var sigs []signature
	for _, l := range m.Layers {
		if l.MediaType != SimpleSigningMediaType {
			continue
		}
		b64, ok := l.Annotations[SignatureAnnotation]
		if !ok {
			continue
		}
		if len(sigs) == maxSignatures {
			return nil, fmt.Errorf("%w: %s has more than %d signatures", ErrNoSignature, tag, maxSignatures)
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: layer %s: signature annotation is not base64", ErrNoSignature, tag, l.Digest)
		}
		if l.Size > maxPayloadBytes {
			return nil, fmt.Errorf("%w: %s: payload %s is %d bytes, over %d", ErrNoSignature, tag, l.Digest, l.Size, maxPayloadBytes)
		}
		body, err := readBlob(img, l.Digest)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: payload %s: %w", ErrNoSignature, tag, l.Digest, err)
		}
		sigs = append(sigs, signature{payload: body, sig: raw})
	}
	return sigs, nil
}

// readBlob reads a payload layer, bounded, and checks its digest.
func readBlob(img v1.Image, d v1.Hash) ([]byte, error) {
	l, err := img.LayerByDigest(d)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxPayloadBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxPayloadBytes {
		return nil, fmt.Errorf("over %d bytes", maxPayloadBytes)
	}
	if sum := sha256.Sum256(body); d.Algorithm != "sha256" || fmt.Sprintf("%x", sum) != d.Hex {
		return nil, fmt.Errorf("content does not hash to %s", d)
	}
	return body, nil
}

// key is a policy key, ready to verify with.
type key struct {
	name string
	tm   root.TrustedMaterial
}

// parseKey reads a PEM public key (cosign.pub) into sigstore-go trusted material.
func parseKey(nameOf string, pemText []byte) (*key, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemText)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, nameOf, err)
	}
	ver, err := sigsig.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, nameOf, err)
	}
	ek := root.NewExpiringKey(ver, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return ek, nil })
	return &key{name: nameOf, tm: tm}, nil
}

// key returns k ready to verify with, fetching a kbs:/// key once (a failed fetch is tried
// again at the next pull).
func (v *Verifier) key(ctx context.Context, k imagepolicy.Key) (*key, error) {
	if k.URI == "" {
		return parseKey(k.String(), k.PEM)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if kk, ok := v.keys[k.URI]; ok {
		return kk, nil
	}
	if v.kbs == nil {
		return nil, fmt.Errorf("%w: keyPath %s needs the KBS, and this guest has none (initdata veil.toml [kbs] url, and a TEE to attest with)", ErrKey, k.URI)
	}
	pemText, err := v.kbs.GetResource(ctx, k.URI)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	kk, err := parseKey(k.URI, pemText)
	if err != nil {
		return nil, err
	}
	v.keys[k.URI] = kk
	return kk, nil
}

// entity is a cosign signature as a sigstore-go signed entity: a message signature over the
// payload, by a public key, with no transparency log entry or timestamp.
type entity struct {
	verify.BaseSignedEntity
	sig *bundle.MessageSignature
}

func (e *entity) VerificationContent() (verify.VerificationContent, error) {
	return &bundle.PublicKey{}, nil
}
func (e *entity) SignatureContent() (verify.SignatureContent, error) { return e.sig, nil }
func (e *entity) Timestamps() ([][]byte, error)                      { return nil, nil }
func (e *entity) Version() (string, error)                           { return "v0.3", nil }

// verify checks s with each key (sigstore-go, offline, key-based) and returns the payload of
// the first that verifies. Only then is the payload parsed.
func (s signature) verify(keys []*key) (*payload.SimpleContainerImage, error) {
	sum := sha256.Sum256(s.payload)
	ent := &entity{sig: bundle.NewMessageSignature(sum[:], "SHA2_256", s.sig)}
	var errs []string
	for _, k := range keys {
		vf, err := verify.NewVerifier(k.tm, verify.WithNoObserverTimestamps())
		if err != nil {
			return nil, err
		}
		_, err = vf.Verify(ent, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(s.payload)), verify.WithKey()))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k.name, err))
			continue
		}
		var p payload.SimpleContainerImage
		d := json.NewDecoder(bytes.NewReader(s.payload))
		if err := d.Decode(&p); err != nil {
			return nil, fmt.Errorf("verified payload is not simple-signing JSON: %w", err)
		}
		if p.Critical.Type != payload.CosignSignatureType {
			return nil, fmt.Errorf("verified payload has type %q, not %q", p.Critical.Type, payload.CosignSignatureType)
		}
		return &p, nil
	}
	return nil, fmt.Errorf("does not verify with %s", strings.Join(errs, ", "))
}
