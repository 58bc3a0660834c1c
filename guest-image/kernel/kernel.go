// Package kernel builds Veil's own guest kernel: Debian's kernel source package (the same
// 6.12 series as the cloud kernel, pinned in the image lock) configured with Veil's fragment
// (veil.config: allnoconfig, the fragment, olddefconfig, then a check that every option the
// fragment sets came out as asked), compiled reproducibly (fixed timestamp, user, host and
// version; no debug information) into a bzImage with everything built in and no modules.
// Builds are cached by the digest of their inputs: the source package's SHA-256, the
// fragment, the compiler and linker versions and the build's fixed settings.
package kernel

import (
	_ "embed"
	"fmt"
)

// Kind says which kernel an image boots.
type Kind string

const (
	// Debian is Debian's cloud kernel package, with modules for what it does not build in.
	Debian Kind = "debian"
	// Veil is the kernel this package builds from Debian's source package with Fragment.
	Veil Kind = "veil"
)

// ParseKind checks a kind's name; empty means Debian.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case "", Debian:
		return Debian, nil
	case Veil:
		return Veil, nil
	}
	return "", fmt.Errorf("kernel %q: want %s or %s", s, Debian, Veil)
}

// FragmentFile is the fragment's path in the repository.
const FragmentFile = "guest-image/kernel/veil.config"

// Fragment is the config fragment veil-image was built with (veil.config).
//
//go:embed veil.config
var Fragment []byte

// SourcePackagePrefix is how the names of Debian's kernel source packages start: the
// package of series 6.12 is linux-source-6.12.
const SourcePackagePrefix = "linux-source-"
