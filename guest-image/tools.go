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
// (CONFIG_EXT4_USE_FOR_EXT2). The package is pinned by the lock file (Lock.Mkfs): the initrd's
// bytes, and so its measurement, must not change with the archive.
const (
	// ToolsSuite is the suite the guest's tools come from.
	ToolsSuite = "bookworm"
	// MkfsPackage is the package that provides the guest's mke2fs (its version: Lock.Mkfs).
	MkfsPackage = "busybox-static"
	// MkfsPackagePath is the binary in the package; api.MkfsPath is where the initrd has it.
	// busybox picks its applet from argv[0]'s base name, mke2fs.
	MkfsPackagePath = "bin/busybox"
)

// fetchMkfs makes sure the locked busybox-static package is in the cache, unpacked, and
// returns it with its binary (checked to be a static x86-64 executable).
func fetchMkfs(ctx context.Context, o Options, p *progress) (*debian.Package, []byte, error) {
	l := o.Lock.Mkfs
	deb, err := fetchLocked(ctx, l, o.Mirror, o.CacheDir, o.LockName, p)
	if err != nil {
		return nil, nil, err
	}
	pkg := l.Package()
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
