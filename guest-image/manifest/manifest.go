// Package manifest describes a built guest image: the manifest.json that veil-image writes
// next to the kernel and initrd (their sizes and SHA-256/SHA-384 digests, the kernel command
// line, the modules, the sim authority's digests, the Debian packages, the source commit and Go
// toolchain of the binaries), and the names of those files. It reads,
// writes and checks manifests and nothing else, so that what boots an image (the shim, veil-ctl)
// does not link the builder (package guestimage: apt, cpio, kernel modules).
package manifest

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Names of the files a build writes into its output directory.
const (
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd.img"
	ManifestFile = "manifest.json"
)

// Manifest describes one build. It is written as OutDir/manifest.json; it
// holds no timestamps, so the same inputs give the same manifest.
type Manifest struct {
	// FormatVersion is the builder's FormatVersion (guestimage.FormatVersion).
	FormatVersion int `json:"formatVersion"`
	// InputDigest is the digest of the build's inputs (guestimage.Inputs.Digest, hex SHA-256).
	InputDigest string `json:"inputDigest"`
	// ImageVersion is the free-form label from the build's options.
	ImageVersion string `json:"imageVersion"`
	// KernelRelease is the kernel's release (uname -r), e.g.
	// "6.12.95+deb12-cloud-amd64".
	KernelRelease string `json:"kernelRelease"`
	// Cmdline is the kernel command line to boot with.
	Cmdline string `json:"cmdline"`
	// Modules are the guest paths of the modules in the initrd, in load
	// order, as in its /etc/veil/modules.list.
	Modules []string `json:"modules"`
	// ModuleNames are the modules the build was asked for (before dependencies), as
	// normalised names: with Cmdline, ImageVersion, the lock and the binaries, what a rebuild
	// needs.
	ModuleNames []string `json:"moduleNames,omitempty"`
	// KernelPackage is the Debian package the kernel and modules come from: Debian's kernel
	// package, or for the veil kernel the source package it was built from.
	KernelPackage PackageRef `json:"kernelPackage"`
	// KernelKind is which kernel the image boots: "debian" (Debian's cloud kernel) or "veil"
	// (Veil's own, built from KernelPackage with KernelConfig's fragment). Empty in
	// manifests from before there was a choice: debian.
	KernelKind string `json:"kernelKind,omitempty"`
	// KernelConfig describes the veil kernel's configuration and build; nil for Debian's.
	KernelConfig *KernelConfig `json:"kernelConfig,omitempty"`
	// MkfsPackage is the Debian package the guest's mke2fs comes from (the scratch disk's
	// file system, api.MkfsPath).
	MkfsPackage *PackageRef `json:"mkfsPackage,omitempty"`
	// InitSHA256 is the hex SHA-256 of the binary installed as /init.
	InitSHA256 string `json:"initSHA256"`
	// AgentSHA256 is the hex SHA-256 of the agent at api.AgentPath, when it is
	// not /init itself.
	AgentSHA256 string `json:"agentSHA256,omitempty"`
	// Kernel describes OutDir/vmlinuz.
	Kernel Artifact `json:"kernel"`
	// Initrd describes OutDir/initrd.img.
	Initrd Artifact `json:"initrd"`
	// SimAuthority describes the sim authority in the initrd; nil: the image cannot be a
	// sim guest.
	SimAuthority *SimAuthority `json:"simAuthority,omitempty"`
	// Source says what the guest binaries were built from and how (read from the Go build
	// information in the binaries themselves); nil: binaries without it (not Veil's build).
	Source *Source `json:"source,omitempty"`
	// LockSHA256 is the hex SHA-256 of the lock file the build read (guest-image/image.lock).
	LockSHA256 string `json:"lockSHA256,omitempty"`
}

// KernelConfig describes how the veil kernel was configured and built.
type KernelConfig struct {
	// FragmentSHA256 is the hex SHA-256 of the config fragment (guest-image/kernel/veil.config).
	FragmentSHA256 string `json:"fragmentSHA256"`
	// ConfigSHA256 is the hex SHA-256 of the resulting .config.
	ConfigSHA256 string `json:"configSHA256"`
	// SourceSHA256 is the hex SHA-256 of the kernel source package file.
	SourceSHA256 string `json:"sourceSHA256"`
	// Compiler and Linker are the first lines of `gcc --version` and `ld --version`.
	Compiler string `json:"compiler"`
	Linker   string `json:"linker"`
	// BuildKey is the digest of the build's inputs, the kernel cache's key.
	BuildKey string `json:"buildKey"`
}

// Source describes the source and toolchain of an image's Go binaries (/init and the agent),
// everything `veil-image verify` needs to rebuild them.
type Source struct {
	// Commit is the git commit both binaries were built from (their version stamp).
	Commit string `json:"commit"`
	// Modified: the work tree had changes (a "-dirty" stamp); such an image cannot be rebuilt.
	Modified bool `json:"modified"`
	// GoVersion is the Go toolchain that built them, e.g. "go1.26.8".
	GoVersion string `json:"goVersion"`
	// CC is the C compiler of the agent's cgo parts (first line of its --version); it and
	// the static C libraries come from the build host, not from the lock file.
	CC string `json:"cc,omitempty"`
	// Init and Agent are the build settings Go recorded in each binary (go version -m): flags,
	// tags, CGO_ENABLED, GOARCH, GOAMD64, the version stamp, as "key=value".
	Init  []string `json:"init"`
	Agent []string `json:"agent,omitempty"`
}

// PackageRef names one Debian package file.
type PackageRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// SHA256 is the hex SHA-256 of the .deb file.
	SHA256 string `json:"sha256"`
	// Filename is the file's path in the Debian archive (pool/…), from the lock file.
	Filename string `json:"filename,omitempty"`
}

// Artifact describes one output file.
type Artifact struct {
	// File is the file name within the output directory.
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	SHA384 string `json:"sha384"`
}

// SimAuthority describes the sim authority an image carries (veil-image build
// --sim-authority): the simulated TEE's signing keys, at sim.GuestAuthorityPath in the
// initrd (mode 0600). Only an image with one can boot as a sim guest (kernel parameter
// veil.tee=sim). The keys never leave the image; the manifest records the digests of the
// roots a KBS is given to trust them, so that an operator can match image and KBS.
type SimAuthority struct {
	// Path is the authority's path in the guest.
	Path string `json:"path"`
	// SNPRootsSHA256 is the hex SHA-256 of the sim SNP roots (sim-snp-roots.pem: ASK, ARK).
	SNPRootsSHA256 string `json:"snpRootsSHA256"`
	// TDXRootSHA256 is the hex SHA-256 of the sim TDX root (sim-tdx-root.pem).
	TDXRootSHA256 string `json:"tdxRootSHA256"`
}

// DescribeBytes returns the Artifact for data stored as file.
func DescribeBytes(file string, data []byte) Artifact {
	s256, s384 := sha256.Sum256(data), sha512.Sum384(data)
	return Artifact{File: file, Size: int64(len(data)),
		SHA256: hex.EncodeToString(s256[:]), SHA384: hex.EncodeToString(s384[:])}
}

// DescribeFile hashes the file dir/name.
func DescribeFile(dir, name string) (Artifact, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return Artifact{}, fmt.Errorf("describing %s: %w", name, err)
	}
	defer f.Close()
	h256, h384 := sha256.New(), sha512.New384()
	n, err := io.Copy(io.MultiWriter(h256, h384), f)
	if err != nil {
		return Artifact{}, fmt.Errorf("hashing %s: %w", f.Name(), err)
	}
	return Artifact{File: name, Size: n,
		SHA256: hex.EncodeToString(h256.Sum(nil)), SHA384: hex.EncodeToString(h384.Sum(nil))}, nil
}

// Read reads dir/manifest.json.
func Read(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("reading guest image manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing guest image manifest %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, nil
}

// Encode returns the manifest as indented JSON ending in a newline.
func (m *Manifest) Encode() []byte {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("encoding manifest: %v", err)) // plain strings and ints: cannot fail
	}
	return append(b, '\n')
}

// Verify checks that dir holds the files the manifest describes, with the
// recorded sizes and digests.
func (m *Manifest) Verify(dir string) error {
	var errs []error
	for _, want := range []Artifact{m.Kernel, m.Initrd} {
		got, err := DescribeFile(dir, want.File)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if got != want {
			errs = append(errs, fmt.Errorf("%s does not match the manifest (size %d, sha256 %s; manifest: size %d, sha256 %s)",
				want.File, got.Size, got.SHA256, want.Size, want.SHA256))
		}
	}
	return errors.Join(errs...)
}
