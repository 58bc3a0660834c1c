package guestimage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/veil-runtime/veil/guest-image/manifest"
)

// The manifest's types, file names and reader live in guest-image/manifest, which the shim
// imports without the builder. These aliases keep the builder's API (Build returns a
// *Manifest; callers read one back with ReadManifest) in one place.
type (
	Manifest     = manifest.Manifest
	PackageRef   = manifest.PackageRef
	Artifact     = manifest.Artifact
	SimAuthority = manifest.SimAuthority
)

// Names of the files a build writes into the output directory.
const (
	KernelFile   = manifest.KernelFile
	InitrdFile   = manifest.InitrdFile
	ManifestFile = manifest.ManifestFile
)

// ReadManifest reads dir/manifest.json (manifest.Read).
func ReadManifest(dir string) (*Manifest, error) { return manifest.Read(dir) }

// Inputs are everything a build's output depends on.
type Inputs struct {
	FormatVersion int `json:"formatVersion"`
	// LockSHA256 is the hex SHA-256 of the lock file (its canonical encoding).
	LockSHA256 string `json:"lockSHA256"`
	// Source is the binaries' source commit (with "-dirty" for a modified tree), when their
	// build record says it (manifest.Source).
	Source string `json:"source,omitempty"`
	// InitSHA256 is the hex SHA-256 of the /init binary.
	InitSHA256 string `json:"initSHA256"`
	// AgentSHA256 is the hex SHA-256 of the agent when it is a binary of its own.
	AgentSHA256 string `json:"agentSHA256,omitempty"`
	// KernelDebSHA256 is the hex SHA-256 of the kernel package file (for the veil kernel,
	// of the source package file).
	KernelDebSHA256 string `json:"kernelDebSHA256"`
	// Kernel is the kernel kind (kernel.Debian or kernel.Veil).
	Kernel string `json:"kernel"`
	// KernelBuild is the veil kernel's build key (kernel.Inputs.Key: the source package,
	// the fragment, the compiler and linker, the fixed build settings).
	KernelBuild string `json:"kernelBuild,omitempty"`
	// MkfsDebSHA256 is the hex SHA-256 of the package file of the guest's mke2fs.
	MkfsDebSHA256 string `json:"mkfsDebSHA256,omitempty"`
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

// upToDate returns the manifest in dir when it was made from the same
// inputs and the files still match it.
func upToDate(dir, inputDigest string) (*Manifest, bool) {
	m, err := manifest.Read(dir)
	if err != nil || m.FormatVersion != FormatVersion || m.InputDigest != inputDigest {
		return nil, false
	}
	if m.Kernel.File != KernelFile || m.Initrd.File != InitrdFile || m.Verify(dir) != nil {
		return nil, false
	}
	return m, true
}
