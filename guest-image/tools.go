package guestimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/guest-image/debian"
)

// The guest's mkfs: the encrypted scratch disk (agent/scratch) needs a file system made at
// every boot, and the kernel cannot make one. busybox-static's mke2fs is one static binary
// (no loader, no libraries in the initrd, unlike e2fsprogs' mke2fs with its five shared
// libraries and libc); it makes ext2, which the kernel's built-in ext4 driver mounts
// (CONFIG_EXT4_USE_FOR_EXT2). The package version is pinned: the initrd's bytes, and so its
// measurement, must not change with the archive. Debian drops superseded versions from the
// archive at point releases; the pin then fails with a clear error and must be moved.
const (
	// ToolsSuite is the suite the guest's tools come from.
	ToolsSuite = "bookworm"
	// MkfsPackage and MkfsVersion pin the package that provides the guest's mke2fs.
	MkfsPackage = "busybox-static"
	MkfsVersion = "1:1.35.0-4+deb12u1+b1"
	// MkfsPackagePath is the binary in the package; api.MkfsPath is where the initrd has it.
	// busybox picks its applet from argv[0]'s base name, mke2fs.
	MkfsPackagePath = "bin/busybox"
)

// fetchMkfs makes sure the pinned busybox-static package is in the cache, unpacked, and
// returns it with its binary (checked to be a static x86-64 executable).
func fetchMkfs(ctx context.Context, o Options, p *progress) (*debian.Package, []byte, error) {
	f := &debian.Fetcher{Dir: filepath.Join(o.CacheDir, "apt-tools"), Mirror: o.Mirror, Suite: ToolsSuite,
		Progress: p.indented()}
	p.step("index", "updating package lists: %s", f.SourcesLine())
	if err := f.Update(ctx); err != nil {
		return nil, nil, fmt.Errorf("updating the package lists of %s: %w", ToolsSuite, err)
	}
	pkg, err := f.Find(ctx, MkfsPackage, MkfsVersion)
	if err != nil {
		return nil, nil, fmt.Errorf("finding the guest's mkfs package %s=%s (the pin in guest-image/tools.go may need moving to the archive's version): %w",
			MkfsPackage, MkfsVersion, err)
	}
	deb, _, err := f.Download(ctx, pkg, filepath.Join(o.CacheDir, "debs"))
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(o.CacheDir, "tools", pkg.SHA256[:16])
	if _, err := debian.Unpack(ctx, deb, dir); err != nil {
		return nil, nil, err
	}
	bin := filepath.Join(dir, MkfsPackagePath)
	if _, err := os.Stat(bin); err != nil {
		return nil, nil, fmt.Errorf("package %s has no %s: %w", pkg, MkfsPackagePath, err)
	}
	data, err := readInit(bin)
	if err != nil {
		return nil, nil, fmt.Errorf("mkfs: %w", err)
	}
	p.step("mkfs", "%s: %s as %s (%s)", pkg, MkfsPackagePath, api.MkfsPath, mib(len(data)))
	return pkg, data, nil
}
