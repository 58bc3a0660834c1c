package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/imagepull"
)

// GuestPullDriver is the storage driver of a container root file system that the agent pulls
// itself: Source is the image reference as the pod wrote it, MountPoint the spec's root.path.
const GuestPullDriver = "image_guest_pull"

// ImagesDir is the guest-private directory of pulled images (imagepull's cache) and of the
// overlays' per-container upper and work directories. It lies below Root, on the guest's
// /run tmpfs (guest memory), but the host may neither mount on it nor write into it
// (CheckHostPath).
const ImagesDir = Root + "/images"

// overlayDir holds one directory per container, with upper/ and work/ of its overlay.
const overlayDir = "overlay"

// digestPattern is the form of the pin a guest pull accepts.
var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// CheckHostPath is CheckPath for a path the host chose below root: it must also lie outside
// root's images directory (ImagesDir for Root), which only the agent writes.
func CheckHostPath(root, p, what string) error {
	if err := CheckPath(root, p, what); err != nil {
		return err
	}
	if images := root + "/images"; p == images || strings.HasPrefix(p, images+"/") {
		return fmt.Errorf("%s %q is in the guest's image cache %s: %w", what, p, images, errdefs.ErrInvalidArgument)
	}
	return nil
}

// GuestPull pulls container images in the guest and mounts them as root file systems.
type GuestPull struct {
	// Root is the directory the mount points must lie below; "" means Root (tests use a
	// temporary directory).
	Root string
	// Dir holds the cache and the overlays' directories; "" means Root's images directory
	// (ImagesDir).
	Dir string
	// InsecureRegistries are the registries (host[:port]) that may be reached over plain
	// HTTP. They must come from measured configuration (initdata), never from the host.
	InsecureRegistries []string
	// KeyProvider opens the keys of encrypted layers (imagepull.NewKBSKeyProvider of the
	// agent/cdh hub of the measured KBS); nil refuses encrypted layers.
	KeyProvider imagepull.KeyProvider
}

func (g *GuestPull) root() string {
	if g.Root == "" {
		return Root
	}
	return g.Root
}

func (g *GuestPull) dir() string {
	if g.Dir == "" {
		return g.root() + "/images"
	}
	return g.Dir
}

// CheckDigest returns an InvalidArgument error naming what unless d is "sha256:<64 hex>".
func CheckDigest(d, what string) error {
	if d == "" {
		return fmt.Errorf("%s is missing: an %s storage pulls by the digest it pins: %w", what, GuestPullDriver, errdefs.ErrInvalidArgument)
	}
	if !digestPattern.MatchString(d) {
		return fmt.Errorf("%s %q is not a sha256 digest (sha256:<64 hex digits>): %w", what, d, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Mount pulls s.Source pinned to digest (checked by imagepull against the registry's content)
// into the cache and mounts an overlay of it on s.MountPoint, its upper and work directories
// private to container id. The returned function undoes the mount and removes the
// container's directories; the cache entry stays. On error nothing is left but the cache.
func (g *GuestPull) Mount(ctx context.Context, id string, s *api.Storage, digest string) (func() error, error) {
	mp := s.GetMountPoint()
	if err := CheckHostPath(g.root(), mp, "storage mount_point"); err != nil {
		return nil, err
	}
	if s.GetSource() == "" {
		return nil, fmt.Errorf("%s storage at %s has no image reference: %w", GuestPullDriver, mp, errdefs.ErrInvalidArgument)
	}
	if err := CheckDigest(digest, "image digest"); err != nil {
		return nil, err
	}
	img, err := imagepull.Pull(ctx, s.GetSource(), imagepull.Options{
		Digest:             digest,
		CacheDir:           g.dir(),
		InsecureRegistries: g.InsecureRegistries,
		KeyProvider:        g.KeyProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("%s storage at %s: %w", GuestPullDriver, mp, err)
	}
	log.G(ctx).WithField("container", id).WithField("image", s.GetSource()).WithField("digest", digest).
		Infof("image pulled in the guest: %s", img.RootFS)
	cdir := filepath.Join(g.dir(), overlayDir, id)
	undo := func() error {
		err := unmount(g.root(), mp)
		if parent := filepath.Dir(mp); parent != g.root() {
			_ = os.Remove(parent) // the container's directory, when it is empty now
		}
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
