package guestimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/veil-runtime/veil/guest-image/debian"
)

// kernelTree is an unpacked kernel package.
type kernelTree struct {
	dir     string // root of the unpacked package; empty for the veil kernel
	release string // e.g. 6.12.95+deb12-cloud-amd64
	image   string // the veil kernel's bzImage
}

func (k *kernelTree) vmlinuz() string {
	if k.image != "" {
		return k.image
	}
	return filepath.Join(k.dir, "boot", "vmlinuz-"+k.release)
}
func (k *kernelTree) modulesDir() string {
	return filepath.Join(k.dir, "lib", "modules", k.release)
}

// fetchKernel makes sure the locked kernel package's .deb is in the cache.
func fetchKernel(ctx context.Context, o Options, p *progress) (*debian.Package, string, error) {
	k := o.Lock.Kernel
	deb, err := fetchLocked(ctx, k, o.Mirror, o.CacheDir, o.LockName, p)
	if err != nil {
		return nil, "", err
	}
	p.step("kernel", "%s (%s, sha256 %s)", k, mib(int(k.Size)), k.SHA256)
	return k.Package(), deb, nil
}

// pickKernel resolves a pin ("NAME" or "NAME=VERSION") or, without one, the
// newest package matching KernelPackagePattern.
func pickKernel(ctx context.Context, f *debian.Fetcher, pin string) (*debian.Package, error) {
	if pin == "" {
		pkg, err := f.Latest(ctx, KernelPackagePattern)
		if err != nil {
			return nil, fmt.Errorf("finding the newest 6.12 cloud kernel: %w", err)
		}
		return pkg, nil
	}
	name, version, _ := strings.Cut(pin, "=")
	pkg, err := f.Find(ctx, name, version)
	if err != nil {
		return nil, fmt.Errorf("finding kernel package %q: %w", pin, err)
	}
	return pkg, nil
}

// unpackKernel unpacks the .deb into the cache (once per package file) and
// finds the kernel release in it.
func unpackKernel(ctx context.Context, o Options, deb string, pkg *debian.Package, p *progress) (*kernelTree, error) {
	dir := filepath.Join(o.CacheDir, "kernels", pkg.SHA256[:16])
	done := p.timer("unpack")
	cached, err := debian.Unpack(ctx, deb, dir)
	if err != nil {
		return nil, err
	}
	if cached {
		p.step("unpack", "cached: %s", dir)
	} else {
		done("%s", dir)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "lib", "modules"))
	if err != nil {
		return nil, fmt.Errorf("kernel package %s has no modules directory: %w", pkg, err)
	}
	if len(entries) != 1 || !entries[0].IsDir() {
		return nil, fmt.Errorf("kernel package %s: want one release under lib/modules, found %d entries", pkg, len(entries))
	}
	k := &kernelTree{dir: dir, release: entries[0].Name()}
	if _, err := os.Stat(k.vmlinuz()); err != nil {
		return nil, fmt.Errorf("kernel package %s has no kernel image: %w", pkg, err)
	}
	return k, nil
}

// lockCache takes an exclusive lock on the cache directory, so concurrent
// builds do not run apt in the same state directory at once. It returns the
// function that releases it.
func lockCache(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cache directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking cache directory: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking cache directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
