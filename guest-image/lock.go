package guestimage

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/veil-runtime/veil/guest-image/debian"
)

// LockFile is the lock file's path in the repository. `make image` passes it to veil-image
// build; veil-image also embeds the copy it was built with (DefaultLock).
const LockFile = "guest-image/image.lock"

// The lock file veil-image was built with.
//
//go:embed image.lock
var defaultLock []byte

// Lock pins everything a build takes from outside the repository: the Go toolchain of the
// guest binaries and the Debian packages of the image (the kernel, the kernel's source for the
// veil kernel, and the guest's mke2fs), each by name, version, pool file name and SHA-256. A build fetches exactly these
// files and refuses one whose digest differs; moving to a newer kernel is a commit of a new
// lock file (veil-image lock --update, or make image-lock).
type Lock struct {
	// Go is the Go toolchain the guest binaries are built with (GOTOOLCHAIN), e.g. "go1.26.8".
	Go string `json:"go"`
	// Kernel is the kernel package (KernelSuite, KernelPackagePattern).
	Kernel LockedPackage `json:"kernel"`
	// KernelSource is the source package of the same kernel version (KernelSourcePackage),
	// which the veil kernel is built from (package kernel).
	KernelSource LockedPackage `json:"kernelSource"`
	// Mkfs is the package of the guest's mke2fs (ToolsSuite, MkfsPackage).
	Mkfs LockedPackage `json:"mkfs"`
}

// LockedPackage is one Debian package file.
type LockedPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	// Suite is the suite the package was locked from (for the record; the file is fetched
	// from the pool by Filename).
	Suite string `json:"suite"`
	// Filename is the file's path in the archive, e.g. pool/main/l/linux/….deb.
	Filename string `json:"filename"`
	Size     int64  `json:"size"`
	// SHA256 is the hex SHA-256 of the .deb, from the archive's signed index at lock time.
	SHA256 string `json:"sha256"`
}

// String returns "name=version".
func (p LockedPackage) String() string { return p.Name + "=" + p.Version }

// Package is the archive's description of the locked file (the inverse of locked).
func (p LockedPackage) Package() *debian.Package {
	return &debian.Package{Name: p.Name, Version: p.Version, Arch: p.Arch, SHA256: p.SHA256, Size: p.Size, Filename: p.Filename}
}

var (
	sha256Re   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	goVerRe    = regexp.MustCompile(`^go1\.[0-9]+\.[0-9]+$`)
	poolFileRe = regexp.MustCompile(`^pool/[A-Za-z0-9+._~/-]+\.deb$`)
)

// DefaultLock returns the lock file veil-image was built with.
func DefaultLock() (*Lock, error) {
	return ParseLock(defaultLock, "(the lock file built into veil-image)")
}

// ReadLock reads and checks a lock file.
func ReadLock(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading lock file: %w", err)
	}
	return ParseLock(b, path)
}

// ParseLock parses and checks a lock file's bytes; name is for errors.
func ParseLock(b []byte, name string) (*Lock, error) {
	var l Lock
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("lock file %s: %w", name, err)
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("lock file %s: %w", name, err)
	}
	return &l, nil
}

// Validate checks every field, naming each one at fault.
func (l *Lock) Validate() error {
	var errs []error
	if !goVerRe.MatchString(l.Go) {
		errs = append(errs, fmt.Errorf("go %q is not a Go release such as go1.26.8", l.Go))
	}
	for _, p := range []struct {
		field string
		pkg   LockedPackage
	}{{"kernel", l.Kernel}, {"kernelSource", l.KernelSource}, {"mkfs", l.Mkfs}} {
		if p.pkg.Name == "" || p.pkg.Version == "" || p.pkg.Arch == "" || p.pkg.Suite == "" {
			errs = append(errs, fmt.Errorf("%s: name, version, arch and suite are required", p.field))
		}
		if !poolFileRe.MatchString(p.pkg.Filename) {
			errs = append(errs, fmt.Errorf("%s: filename %q is not a pool/….deb path", p.field, p.pkg.Filename))
		}
		if !sha256Re.MatchString(p.pkg.SHA256) {
			errs = append(errs, fmt.Errorf("%s: sha256 %q is not 64 lower-case hex digits", p.field, p.pkg.SHA256))
		}
		if p.pkg.Size <= 0 {
			errs = append(errs, fmt.Errorf("%s: size %d", p.field, p.pkg.Size))
		}
	}
	if l.Kernel.Name != "" && !regexp.MustCompile(KernelPackagePattern).MatchString(l.Kernel.Name) {
		errs = append(errs, fmt.Errorf("kernel: %q does not match %s", l.Kernel.Name, KernelPackagePattern))
	}
	if l.KernelSource.Name != "" && l.KernelSource.Name != KernelSourcePackage {
		errs = append(errs, fmt.Errorf("kernelSource: package %q, the builder takes %s", l.KernelSource.Name, KernelSourcePackage))
	}
	if l.KernelSource.Version != "" && l.KernelSource.Version != l.Kernel.Version {
		errs = append(errs, fmt.Errorf("kernelSource: version %s, the kernel's is %s: the veil kernel is built from the source of the locked kernel (%s moves both)",
			l.KernelSource.Version, l.Kernel.Version, UpdateCommand))
	}
	if l.Mkfs.Name != "" && l.Mkfs.Name != MkfsPackage {
		errs = append(errs, fmt.Errorf("mkfs: package %q, the builder takes %s", l.Mkfs.Name, MkfsPackage))
	}
	return errors.Join(errs...)
}

// Encode returns the lock file's bytes: indented JSON ending in a newline.
func (l *Lock) Encode() []byte {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("encoding lock: %v", err)) // plain strings and ints: cannot fail
	}
	return append(b, '\n')
}

// Digest is the hex SHA-256 of the lock's encoding.
func (l *Lock) Digest() string { return sha256Hex(l.Encode()) }
