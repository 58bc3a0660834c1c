package imagepull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// Cache layout under Options.CacheDir (one root filesystem per pinned digest and platform):
//
//	images/sha256/<hex>/<os>_<arch>[_<variant>]/rootfs/      the unpacked tree
//	images/sha256/<hex>/<os>_<arch>[_<variant>]/image.json   the Image (digests, config)
//	locks/<hex>.<os>_<arch>[_<variant>].lock                  flock(2), one per entry
//	tmp/<hex>.<os>_<arch>[_<variant>]/                        staging, only under the lock
//
// An entry appears by rename(2) of its staging directory once every check has passed, so an
// entry that exists is complete. <hex> is the digest the caller pinned (an index or a
// manifest), so a hit needs no registry round trip.
const (
	imagesDir = "images"
	locksDir  = "locks"
	tmpDir    = "tmp"
	imageJSON = "image.json"
	rootfsDir = "rootfs"
)

// cacheEntry names one entry of the cache.
type cacheEntry struct {
	dir  string // CacheDir
	key  string // <hex>.<platform>
	hex  string
	plt  string
	seal bool // Options.SealCache
}

// newCacheEntry returns the entry for digest d (sha256 only) and platform p.
func newCacheEntry(dir string, d v1.Hash, p v1.Platform) cacheEntry {
	plt := p.OS + "_" + p.Architecture
	if p.Variant != "" {
		plt += "_" + p.Variant
	}
	plt = strings.ReplaceAll(plt, string(filepath.Separator), "-")
	return cacheEntry{dir: dir, key: d.Hex + "." + plt, hex: d.Hex, plt: plt}
}

func (e cacheEntry) final() string   { return filepath.Join(e.dir, imagesDir, "sha256", e.hex, e.plt) }
func (e cacheEntry) staging() string { return filepath.Join(e.dir, tmpDir, e.key) }
func (e cacheEntry) lockPath() string {
	return filepath.Join(e.dir, locksDir, e.key+".lock")
}

// load returns the cached Image, or (nil, nil) when the entry does not exist (or, with seal,
// is not sealed: discardUnsealed then removes it under the lock).
func (e cacheEntry) load() (*Image, error) {
	if e.seal && !sealed(e.final()) {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(e.final(), imageJSON))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache entry %s: %w", e.final(), err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("cache entry %s: %w", e.final(), err)
	}
	img.RootFS = filepath.Join(e.final(), rootfsDir)
	img.Cached = true
	return &img, nil
}

// lock takes the entry's exclusive lock, waiting until ctx is done. flock(2) locks belong to
// the open file description, so it excludes goroutines of this process as well as other
// processes sharing the cache.
func (e cacheEntry) lock(ctx context.Context) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(e.lockPath()), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(e.lockPath(), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", e.lockPath(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", e.lockPath(), ctx.Err())
		case <-tick.C:
		}
	}
}

// stage makes a fresh staging directory (removing one a crashed pull left) and returns the
// root filesystem directory inside it. Call only under the lock.
func (e cacheEntry) stage() (rootfs string, err error) {
	if err := os.RemoveAll(e.staging()); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(e.staging()), 0o700); err != nil {
		return "", err
	}
	if err := os.Mkdir(e.staging(), 0o700); err != nil {
		return "", err
	}
	rootfs = filepath.Join(e.staging(), rootfsDir)
	return rootfs, os.Mkdir(rootfs, 0o755)
}

// commit writes img next to the staged tree and renames the staging directory into place.
func (e cacheEntry) commit(img *Image) error {
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(e.staging(), imageJSON), b, 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(e.final()), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(e.staging(), 0o755); err != nil {
		return err
	}
	if err := os.Rename(e.staging(), e.final()); err != nil {
		return err
	}
	if !e.seal {
		return nil
	}
	if err := sealDir(e.final()); err != nil {
		_ = os.RemoveAll(e.final())
		return err
	}
	return nil
}

// sealDir makes dir a read-only bind mount of itself.
func sealDir(dir string) error {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("seal %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("seal %s read-only: %w", dir, err)
	}
	return nil
}

// sealed reports whether dir is the root of a read-only mount (sealDir's).
func sealed(dir string) bool {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
		return false
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 || stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false
	}
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}

// discardUnsealed removes an entry that exists but is not sealed, with seal: it may have been
// changed since it was verified. Call only under the lock.
func (e cacheEntry) discardUnsealed() error {
	if !e.seal {
		return nil
	}
	if _, err := os.Lstat(e.final()); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	_ = unix.Unmount(e.final(), unix.MNT_DETACH) // a bind that is not read-only
	if err := os.RemoveAll(e.final()); err != nil {
		return fmt.Errorf("remove unsealed entry %s: %w", e.final(), err)
	}
	return nil
}

// stageDest makes a staging directory next to dest, after checking that dest is absent or
// an empty directory (rename(2) replaces an empty directory).
func stageDest(dest string) (string, error) {
	ents, err := os.ReadDir(dest)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("destination: %w", err)
	case len(ents) > 0:
		return "", fmt.Errorf("destination %s is not empty: %w", dest, ErrOptions)
	}
	parent, base := filepath.Split(filepath.Clean(dest))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(parent, "."+base+".pull-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}
