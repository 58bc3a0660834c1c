// Package imagesig enforces the image security policy (policy/imagepolicy, from the measured
// initdata) in the guest: before the agent fetches anything of an image but its pinned
// manifest, it looks up the rule of the image's scope and checks every requirement of it:
// insecureAcceptAnything passes, reject refuses, and sigstoreSigned needs a cosign signature
// that verifies with one of the rule's public keys (inline keyData, or a kbs:/// keyPath
// fetched from the KBS after attestation) and whose payload names the pinned digest and a
// reference the rule's signedIdentity accepts.
//
// Signatures are found where cosign 2.x puts them by default: the tag sha256-<hex>.sig in
// the image's repository, an OCI manifest whose layers are simple-signing payloads
// (application/vnd.dev.cosign.simplesigning.v1+json) carrying the base64 signature in the
// dev.cosignproject.cosign/signature annotation. Each signature is verified by sigstore-go's
// verify package with the key as trusted material and no transparency log or timestamp
// (key-based, offline); only a payload whose signature verified is read. OCI 1.1 referrers
// (cosign's --new-bundle-format) and keyless signatures are not supported (docs/imagesig.md).
//
// Every refusal wraps ErrRefused and one of the specific sentinels, and names the image, the
// pin, the rule (scope, index and type of the requirement) and why.
package imagesig

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/containerd/log"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/veil-runtime/veil/policy/imagepolicy"
)

// Sentinel errors.
var (
	// ErrRefused: the policy refused the image. Every refusal wraps it and one below.
	ErrRefused = errors.New("image refused by the image security policy")
	// ErrRejected: the scope's rule is "reject".
	ErrRejected = errors.New("the scope rejects every image")
	// ErrNoSignature: the image has no cosign signature.
	ErrNoSignature = errors.New("no signature")
	// ErrWrongKey: no signature verifies with the rule's keys.
	ErrWrongKey = errors.New("no signature verifies with the policy's keys")
	// ErrDigestMismatch: a signature that verifies is for another manifest digest.
	ErrDigestMismatch = errors.New("signature is for another digest")
	// ErrIdentity: a signature that verifies claims a reference signedIdentity refuses.
	ErrIdentity = errors.New("signature's identity does not match")
	// ErrKey: a key could not be obtained (KBS) or read.
	ErrKey = errors.New("policy key unavailable")
)

// ResourceGetter fetches a KBS resource after attestation (agent/cdh.Hub).
type ResourceGetter interface {
	GetResource(ctx context.Context, uri string) ([]byte, error)
}

// Verifier checks images against a policy. It is safe for concurrent use.
type Verifier struct {
	policy *imagepolicy.Policy
	kbs    ResourceGetter

	mu   sync.Mutex
	keys map[string]*key // kbs:/// keys fetched so far, by URI
}

// New returns a Verifier of p. kbs fetches keyPath keys; nil refuses a rule that needs one
// (with ErrKey, when an image of its scope is pulled).
func New(p *imagepolicy.Policy, kbs ResourceGetter) *Verifier {
	return &Verifier{policy: p, kbs: kbs, keys: map[string]*key{}}
}

// VerifyImage checks the image ref pinned to pin against the policy. opts reach the
// registry (the puller's guarded transport, auth and context); only the signature tag's
// manifest and its payload blobs are fetched. It implements imagepull.Verifier.
func (v *Verifier) VerifyImage(ctx context.Context, ref name.Reference, pin v1.Hash, opts ...remote.Option) error {
	image, err := imagepolicy.ParseImage(ref.String())
	if err != nil {
		return fmt.Errorf("imagesig: %w: %w", ErrRefused, err)
	}
	rule := v.policy.Lookup(image, pin.String())
	var sigs []signature
	var fetched bool
	fetch := func() ([]signature, error) { // once, and only for a sigstoreSigned rule
		if fetched {
			return sigs, nil
		}
		var err error
		if sigs, err = fetchSignatures(ref, pin, opts); err == nil {
			fetched = true
		}
		return sigs, err
	}
	for i, req := range rule.Requirements {
		var err error
		switch req.Type {
		case imagepolicy.TypeAccept:
		case imagepolicy.TypeReject:
			err = ErrRejected
		case imagepolicy.TypeSigstoreSigned:
			err = v.checkSigstore(ctx, req, image, pin, fetch)
		default:
			err = fmt.Errorf("requirement type %q is not enforced by this agent", req.Type)
		}
		if err != nil {
			return &Error{Image: ref.String(), Pin: pin.String(), Rule: rule.Describe(i), Err: err}
		}
	}
	log.G(ctx).WithField("image", ref.String()).WithField("digest", pin.String()).
		Infof("image security policy: accepted by %s", rule.Scope)
	return nil
}

// Error is a refusal: the image, its pin, the rule and why.
type Error struct {
	Image, Pin, Rule string
	Err              error
}

func (e *Error) Error() string {
	return fmt.Sprintf("imagesig: image %s (%s) refused by image policy rule %s: %v", e.Image, e.Pin, e.Rule, e.Err)
}

// Unwrap returns ErrRefused and the reason.
func (e *Error) Unwrap() []error { return []error{ErrRefused, e.Err} }

// checkSigstore obtains req's keys, then the signatures (fetch), and passes when one signature verifies with one of req's keys, names the pin and
// satisfies req's identity.
func (v *Verifier) checkSigstore(ctx context.Context, req imagepolicy.Requirement, image namedRef, pin v1.Hash, fetch func() ([]signature, error)) error {
	keys := make([]*key, 0, len(req.Keys))
	for _, k := range req.Keys { // first: no registry request for a rule whose key is missing
		kk, err := v.key(ctx, k)
		if err != nil {
			return err
		}
		keys = append(keys, kk)
	}
	sigs, err := fetch()
	if err != nil {
		return err
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: no cosign signature (tag %s)", ErrNoSignature, sigTag(pin))
	}
	var reasons []string
	var sentinel error = ErrWrongKey
	for i, s := range sigs {
		p, err := s.verify(keys)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("signature %d: %v", i, err))
			continue
		}
		if p.Critical.Image.DockerManifestDigest != pin.String() {
			reasons = append(reasons, fmt.Sprintf("signature %d is for %s, not the pinned %s", i, p.Critical.Image.DockerManifestDigest, pin))
			sentinel = ErrDigestMismatch
			continue
		}
		if err := req.Identity.Match(image, p.Critical.Identity.DockerReference); err != nil {
			reasons = append(reasons, fmt.Sprintf("signature %d: %v", i, err))
			if sentinel != ErrDigestMismatch {
				sentinel = ErrIdentity
			}
			continue
		}
		log.G(ctx).Debugf("image security policy: signature %d of %d verifies", i, len(sigs))
		return nil
	}
	return fmt.Errorf("%w: %s", sentinel, strings.Join(reasons, "; "))
}
