package resourcepolicy

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/initdata"
)

// SharedRepository is the repository that the default policy releases to every affirming
// guest: a KBS's common secrets (CoCo's "default"). Any other repository is released only to
// guests whose measured initdata digest is bound to it.
const SharedRepository = "default"

// MaxBoundDigests bounds the initdata digests bound to one repository.
const MaxBoundDigests = 1024

// bindingsFile is the JSON form of the repository bindings: repository -> initdata digests.
type bindingsFile map[string][]string

// digestSizes are the sizes of the digests initdata's algorithms make.
func digestSizes() []int {
	var sizes []int
	for _, alg := range initdata.Algorithms() {
		if d, err := initdata.Digest(alg, nil); err == nil {
			sizes = append(sizes, len(d))
		}
	}
	return sizes
}

// NormalizeDigests checks initdata digests (the hex of a digest of one of
// initdata.Algorithms) and returns them lowercased, sorted and without duplicates.
func NormalizeDigests(digests []string) ([]string, error) {
	if len(digests) > MaxBoundDigests {
		return nil, fmt.Errorf("%d initdata digests, at most %d", len(digests), MaxBoundDigests)
	}
	sizes := digestSizes()
	out := make([]string, 0, len(digests))
	for i, d := range digests {
		d = strings.ToLower(strings.TrimSpace(d))
		b, err := hex.DecodeString(d)
		if err != nil || !slices.Contains(sizes, len(b)) {
			return nil, fmt.Errorf("initdata digest %d (%.20q): want the hex of a digest of one of %q", i, d, initdata.Algorithms())
		}
		out = append(out, d)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// claimForms returns the forms a bound digest takes in a token's init_data claim, which is
// the launch field that holds it: the digest itself, and the digest fitted (zero-padded or
// truncated) to SNP's HOST_DATA and TDX's MRCONFIGID as the launch stores it.
func claimForms(digests []string) []string {
	out := make([]string, 0, 3*len(digests))
	for _, d := range digests {
		out = append(out, d)
		b, err := hex.DecodeString(d)
		if err != nil {
			continue // NormalizeDigests let only hex through
		}
		out = append(out, hex.EncodeToString(initdata.SNPHostData(b)), hex.EncodeToString(initdata.TDXMRConfigID(b)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkRepository refuses a repository name that no resource path could have.
func checkRepository(repo string) error {
	_, err := protocol.ParseResourcePath(repo + "/x/x")
	if err != nil || strings.Contains(repo, "/") {
		return fmt.Errorf("repository %q: %w", repo, protocol.ErrInvalidPath)
	}
	return nil
}

// readBindings loads the bindings file; a missing file is no bindings.
func readBindings(file string) (bindingsFile, error) {
	if file == "" {
		return bindingsFile{}, nil
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return bindingsFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("repository bindings: %w", err)
	}
	var b bindingsFile
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("repository bindings %s: %w", file, err)
	}
	for repo, digests := range b {
		if err := checkRepository(repo); err != nil {
			return nil, fmt.Errorf("repository bindings %s: %w", file, err)
		}
		if b[repo], err = NormalizeDigests(digests); err != nil {
			return nil, fmt.Errorf("repository bindings %s, repository %q: %w", file, repo, err)
		}
	}
	return b, nil
}
