package guestimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/veil-runtime/veil/guest-image/debian"
)

// UpdateCommand is how a person moves the lock to the archive's current packages.
const UpdateCommand = "make image-lock (veil-image lock --update --lock " + LockFile + ")"

// fetchLocked makes sure the locked package's .deb is in cacheDir/debs and returns its path.
// A cached file whose SHA-256 matches the lock is used as it is; otherwise the file is fetched
// from mirror's pool (Debian keeps a suite's current versions only, but the pool path of a
// locked file stays valid until the archive drops it) and refused unless its SHA-256 is the
// lock's. lockName names the lock file in errors.
func fetchLocked(ctx context.Context, pkg LockedPackage, mirror, cacheDir, lockName string, p *progress) (string, error) {
	dir := filepath.Join(cacheDir, "debs")
	file := filepath.Join(dir, path.Base(pkg.Filename))
	if sum, err := debian.FileSHA256(file); err == nil {
		if sum == pkg.SHA256 {
			p.step("package", "%s: cached %s (sha256 %s, as locked)", pkg, file, sum)
			return file, nil
		}
		p.step("package", "%s: cached %s has sha256 %s, the lock says %s: fetching again", pkg, file, sum, pkg.SHA256)
	}
	if mirror == "" {
		mirror = debian.HostMirror("/etc/apt")
	}
	url := strings.TrimRight(mirror, "/") + "/" + pkg.Filename
	done := p.timer("download")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating download directory: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching locked package %s: %w", pkg, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", fmt.Errorf("the locked package %s (lock file %s) is no longer on %s (%s: 404): Debian drops superseded versions; "+
			"fetch it from https://snapshot.debian.org/ (sha256 %s) into %s, or move the lock to the archive's current version with %s and commit it",
			pkg, lockName, mirror, pkg.Filename, pkg.SHA256, dir, UpdateCommand)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching locked package %s from %s: %s", pkg, url, resp.Status)
	}
	tmp, err := os.CreateTemp(dir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, pkg.Size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("fetching locked package %s from %s: %w", pkg, url, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != pkg.Size || sum != pkg.SHA256 {
		return "", fmt.Errorf("refusing %s from %s: %d bytes with sha256 %s, the lock file %s says %d bytes with sha256 %s",
			pkg, url, n, sum, lockName, pkg.Size, pkg.SHA256)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return "", fmt.Errorf("storing %s: %w", pkg, err)
	}
	done("%s (sha256 %s, as locked)", file, sum)
	return file, nil
}

// LockUpdate says what `veil-image lock --update` takes.
type LockUpdate struct {
	// CacheDir holds the private apt state (as Options.CacheDir).
	CacheDir string
	// Mirror is the archive (as Options.Mirror).
	Mirror string
	// KernelPackage pins the kernel: "NAME" or "NAME=VERSION"; empty means the newest
	// package matching KernelPackagePattern in KernelSuite.
	KernelPackage string
	// MkfsVersion pins busybox-static's version; empty means the newest in ToolsSuite.
	MkfsVersion string
	// Go is the Go toolchain to lock, e.g. "go1.26.8".
	Go string
	// Progress receives apt's output and the steps.
	Progress io.Writer
}

// UpdateLock resolves the packages in the archive's signed indexes (through apt) and returns
// the new lock.
func UpdateLock(ctx context.Context, u LockUpdate) (*Lock, error) {
	if u.CacheDir == "" {
		u.CacheDir = DefaultCacheDir
	}
	if u.Progress == nil {
		u.Progress = io.Discard
	}
	p := &progress{w: u.Progress}
	unlock, err := lockCache(u.CacheDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	kf := &debian.Fetcher{Dir: filepath.Join(u.CacheDir, "apt"), Mirror: u.Mirror, Suite: KernelSuite, Progress: p.indented()}
	p.step("index", "updating package lists: %s", kf.SourcesLine())
	if err := kf.Update(ctx); err != nil {
		return nil, fmt.Errorf("updating the package lists of %s: %w", KernelSuite, err)
	}
	k, err := pickKernel(ctx, kf, u.KernelPackage)
	if err != nil {
		return nil, err
	}
	src, err := kf.Find(ctx, KernelSourcePackage, k.Version)
	if err != nil {
		return nil, fmt.Errorf("finding the kernel's source package %s at its version %s: %w", KernelSourcePackage, k.Version, err)
	}
	tf := &debian.Fetcher{Dir: filepath.Join(u.CacheDir, "apt-tools"), Mirror: u.Mirror, Suite: ToolsSuite, Progress: p.indented()}
	p.step("index", "updating package lists: %s", tf.SourcesLine())
	if err := tf.Update(ctx); err != nil {
		return nil, fmt.Errorf("updating the package lists of %s: %w", ToolsSuite, err)
	}
	m, err := tf.Find(ctx, MkfsPackage, u.MkfsVersion)
	if err != nil {
		return nil, fmt.Errorf("finding the guest's mkfs package %s: %w", MkfsPackage, err)
	}
	l := &Lock{Go: u.Go, Kernel: locked(k, KernelSuite), KernelSource: locked(src, KernelSuite), Mkfs: locked(m, ToolsSuite)}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return l, nil
}

func locked(p *debian.Package, suite string) LockedPackage {
	return LockedPackage{Name: p.Name, Version: p.Version, Arch: p.Arch, Suite: suite, Filename: p.Filename, Size: p.Size, SHA256: p.SHA256}
}
