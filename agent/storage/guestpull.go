package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/imagepull"
)

// overlayDir holds one directory per container, with upper/ and work/ of its overlay.
const overlayDir = "overlay"

// digestPattern is the form of the pin a guest pull accepts.
var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// GuestPull pulls container images in the guest and mounts them as root file systems.
type GuestPull struct {
	// Dir holds the cache and the overlays' upper and work directories: api.ImagesDir in the
	// guest, guest memory that no host-named path reaches.
	Dir string
	// InsecureRegistries are the registries (host[:port]) that may be reached over plain
	// HTTP. They must come from measured configuration (initdata), never from the host.
	InsecureRegistries []string
	// KeyProvider opens the keys of encrypted layers (imagepull.NewKBSKeyProvider of the
	// agent/cdh hub of the measured KBS); nil refuses encrypted layers.
	KeyProvider imagepull.KeyProvider
	// Verifier enforces the measured initdata's image security policy (agent/imagesig)
	// before a pull fetches anything; nil accepts every image.
	Verifier imagepull.Verifier
	// NoSeal leaves cache entries writable (imagepull.Options.SealCache): for tests that
	// cannot mount. The agent seals them.
	NoSeal bool

	mu      sync.Mutex
	running map[string]*pullCall // pulls under way, by reference and digest
}

// CheckDigest returns an InvalidArgument error naming what unless d is "sha256:<64 hex>".
func CheckDigest(d, what string) error {
	if d == "" {
		return fmt.Errorf("%s is missing: an %s storage pulls by the digest it pins: %w", what, api.DriverGuestPull, errdefs.ErrInvalidArgument)
	}
	if !digestPattern.MatchString(d) {
		return fmt.Errorf("%s %q is not a sha256 digest (sha256:<64 hex digits>): %w", what, d, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Mount pulls ref pinned to digest (checked by imagepull against the registry's content) into
// the cache and mounts an overlay of it on mp, the container's root path, its upper and work
// directories private to container id. The returned function undoes the mount and removes
// the container's directories; the cache entry stays. On error nothing is left but the cache.
func (g *GuestPull) Mount(ctx context.Context, id, ref, digest, mp string) (func() error, error) {
	if ref == "" {
		return nil, fmt.Errorf("%s storage at %s has no image reference: %w", api.DriverGuestPull, mp, errdefs.ErrInvalidArgument)
	}
	if err := CheckDigest(digest, "image digest"); err != nil {
		return nil, err
	}
	img, err := g.pull(ctx, ref, digest)
	if err != nil {
		return nil, fmt.Errorf("%s storage at %s: %w", api.DriverGuestPull, mp, err)
	}
	log.G(ctx).WithField("container", id).WithField("image", ref).WithField("digest", digest).
		Infof("image pulled in the guest: %s", img.RootFS)
	cdir := filepath.Join(g.Dir, overlayDir, id)
	undo := func() error {
		err := unmount(mp)
		if rerr := os.RemoveAll(cdir); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", cdir, rerr)
		}
		return err
	}
	if err := g.mountOverlay(img.RootFS, cdir, mp); err != nil {
		_ = undo()
		return nil, err
	}
	return undo, nil
}

// mountOverlay mounts lower (read-only, shared) with upper and work below cdir on mp.
func (g *GuestPull) mountOverlay(lower, cdir, mp string) error {
	if _, err := os.Stat(cdir); err == nil {
		return fmt.Errorf("overlay directory %s exists: %w", cdir, errdefs.ErrAlreadyExists)
	}
	upper, work := filepath.Join(cdir, "upper"), filepath.Join(cdir, "work")
	for _, d := range []string{upper, work, mp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	for _, p := range []string{lower, upper, work} {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("overlay path %q contains ',' or ':': %w", p, errdefs.ErrInvalidArgument)
		}
	}
	data := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", mp, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay of %s at %s: %w", lower, mp, err)
	}
	return nil
}
