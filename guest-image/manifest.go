package guestimage

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

// Names of the files a build writes into the output directory.
const (
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd.img"
	ManifestFile = "manifest.json"
)

// Manifest describes one build. It is written as OutDir/manifest.json; it
// holds no timestamps, so the same inputs give the same manifest.
type Manifest struct {
	// FormatVersion is the builder's FormatVersion.
	FormatVersion int `json:"formatVersion"`
	// InputDigest is Inputs.Digest of the build's inputs (hex SHA-256).
	InputDigest string `json:"inputDigest"`
	// ImageVersion is the free-form label from Options.ImageVersion.
	ImageVersion string `json:"imageVersion"`
	// KernelRelease is the kernel's release (uname -r), e.g.
	// "6.12.95+deb12-cloud-amd64".
	KernelRelease string `json:"kernelRelease"`
	// Cmdline is the kernel command line to boot with.
	Cmdline string `json:"cmdline"`
	// Modules are the guest paths of the modules in the initrd, in load
	// order, as in its /etc/veil/modules.list.
	Modules []string `json:"modules"`
	// KernelPackage is the Debian package the kernel and modules come from.
	KernelPackage PackageRef `json:"kernelPackage"`
	// InitSHA256 is the hex SHA-256 of the binary installed as /init.
	InitSHA256 string `json:"initSHA256"`
	// AgentSHA256 is the hex SHA-256 of the agent at AgentPath, when it is
	// not /init itself.
	AgentSHA256 string `json:"agentSHA256,omitempty"`
	// Kernel describes OutDir/vmlinuz.
	Kernel Artifact `json:"kernel"`
	// Initrd describes OutDir/initrd.img.
	Initrd Artifact `json:"initrd"`
	// SimAuthority describes the sim authority in the initrd; nil: the image cannot be a
	// sim guest.
	SimAuthority *SimAuthority `json:"simAuthority,omitempty"`
}

// PackageRef names one Debian package file.
type PackageRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// SHA256 is the hex SHA-256 of the .deb file.
	SHA256 string `json:"sha256"`
}

// Artifact describes one output file.
type Artifact struct {
	// File is the file name within the output directory.
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	SHA384 string `json:"sha384"`
}

// Inputs are everything a build's output depends on.
type Inputs struct {
	FormatVersion int `json:"formatVersion"`
	// InitSHA256 is the hex SHA-256 of the /init binary.
	InitSHA256 string `json:"initSHA256"`
	// AgentSHA256 is the hex SHA-256 of the agent when it is a binary of its own.
	AgentSHA256 string `json:"agentSHA256,omitempty"`
	// KernelDebSHA256 is the hex SHA-256 of the kernel package file.
	KernelDebSHA256 string `json:"kernelDebSHA256"`
	// Modules are the requested module names (before dependencies).
	Modules      []string `json:"modules"`
	Cmdline      string   `json:"cmdline"`
	ImageVersion string   `json:"imageVersion"`
	// SimAuthoritySHA256 is the hex SHA-256 of the sim authority file, when there is one.
	SimAuthoritySHA256 string `json:"simAuthoritySHA256,omitempty"`
}

// Digest returns the hex SHA-256 of the inputs' canonical JSON encoding.
func (in Inputs) Digest() string {
	b, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("encoding build inputs: %v", err)) // plain strings and ints: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
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

// upToDate returns the manifest in dir when it was made from the same
// inputs and the files still match it.
func upToDate(dir, inputDigest string) (*Manifest, bool) {
	m, err := ReadManifest(dir)
	if err != nil || m.FormatVersion != FormatVersion || m.InputDigest != inputDigest {
		return nil, false
	}
	if m.Kernel.File != KernelFile || m.Initrd.File != InitrdFile || m.Verify(dir) != nil {
		return nil, false
	}
	return m, true
}
