package imagepolicy

import (
	"fmt"

	"github.com/distribution/reference"
)

// Match checks the reference a signature claims (its docker-reference) against image, the
// reference being pulled (from ParseImage), with containers/image's semantics:
//
//   - matchExact: both name a tag or a digest, and are equal;
//   - matchRepoDigestOrExact: the same repository when image names a digest, else matchExact;
//   - matchRepository: the same repository;
//   - exactReference: the claimed reference is Reference (image is not consulted);
//   - exactRepository: the claimed repository is Repository.
//
// The error says how they differ.
func (id Identity) Match(image reference.Named, claimed string) error {
	signed, err := reference.ParseNormalizedNamed(claimed)
	if err != nil {
		return fmt.Errorf("the signature's docker-reference %q is not a reference: %w", claimed, err)
	}
	exact := func(want reference.Named) error {
		if reference.IsNameOnly(signed) {
			return fmt.Errorf("the signature names repository %q without a tag or digest, and %s needs %q", signed.Name(), id.Type, want.String())
		}
		if signed.String() != want.String() {
			return fmt.Errorf("the signature is for %q, %s needs %q", signed.String(), id.Type, want.String())
		}
		return nil
	}
	sameRepo := func(want string) error {
		if signed.Name() != want {
			return fmt.Errorf("the signature is for repository %q, %s needs %q", signed.Name(), id.Type, want)
		}
		return nil
	}
	switch id.Type {
	case IdentityMatchExact:
		return exact(image)
	case IdentityMatchRepoDigestOrExact, "":
		if _, ok := image.(reference.Digested); ok {
			return sameRepo(image.Name())
		}
		return exact(image)
	case IdentityMatchRepository:
		return sameRepo(image.Name())
	case IdentityExactReference:
		want, err := reference.ParseNormalizedNamed(id.Reference)
		if err != nil {
			return err
		}
		return exact(want)
	case IdentityExactRepository:
		return sameRepo(id.Repository)
	}
	return fmt.Errorf("signedIdentity %q is not supported", id.Type)
}
