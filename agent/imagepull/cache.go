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
	dir string // CacheDir
	key string // <hex>.<platform>
	hex string
	plt string
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

// load returns the cached Image, or (nil, nil) when the entry does not exist.
func (e cacheEntry) load() (*Image, error) {
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
	return os.Rename(e.staging(), e.final())
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
