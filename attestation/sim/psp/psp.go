// Package psp is the simulated TEE's launch channel from host to guest: what a real secure
// processor would measure and report about a launch, and how the host hands it to a guest of
// the simulated TEE. A real PSP takes HOST_DATA and the guest policy from the launch commands
// and computes MEASUREMENT itself; in the simulation the host (the shim) computes them
// (LaunchMeasurement) and delivers them on a small read-only virtio-blk disk with the serial
// DiskSerial, one sector in the Launch.Encode format, and selects the simulated TEE with the
// kernel parameter KernelParam=KernelParamSim. The guest's sim attester (attestation/sim)
// copies them into the reports it signs.
//
// The package holds no keys and signs nothing, so the host side uses it without linking the sim
// signers (attestation/sim, go-sev-guest, go-tdx-guest).
package psp

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

const (
	// DiskSerial is the virtio-blk serial of the sim PSP disk.
	DiskSerial = "veil-sim-psp"
	// Magic starts the disk.
	Magic = "VEILPSP1"
	// DiskSize is the size of the disk image: one sector.
	DiskSize = 512
	// KernelParam selects the simulated TEE in the guest: veil.tee=sim.
	KernelParam = "veil.tee"
	// KernelParamSim is KernelParam's value that selects it.
	KernelParamSim = "sim"
)

// headerSize is magic (8), version (4), host-data length (4), policy (8).
const headerSize = 24

// layoutVersion is the layout below.
const layoutVersion = 1

// Launch is what the sim PSP reports about one launch.
//
// Disk layout (little-endian): 0 magic "VEILPSP1" | 8 u32 version (1) | 12 u32 host-data
// length (0..48) | 16 u64 SNP guest policy | 24 host data (48 bytes, zero-padded) | 72
// measurement (48 bytes) | zeros to 512.
type Launch struct {
	// HostData is the launch's host data as the host gave it (at most 48 bytes): SNP
	// HOST_DATA takes its first 32 bytes, TDX MRCONFIGID all 48 (zero-padded).
	HostData []byte
	// Measurement is the launch measurement (see LaunchMeasurement).
	Measurement [48]byte
	// Policy is the SNP guest policy; 0 means sim.DefaultSNPPolicy.
	Policy uint64
}

// Encode returns the PSP disk image.
func (l Launch) Encode() ([]byte, error) {
	if len(l.HostData) > 48 {
		return nil, fmt.Errorf("sim psp: host data has %d bytes, more than 48", len(l.HostData))
	}
	img := make([]byte, DiskSize)
	copy(img, Magic)
	binary.LittleEndian.PutUint32(img[8:], layoutVersion)
	binary.LittleEndian.PutUint32(img[12:], uint32(len(l.HostData)))
	binary.LittleEndian.PutUint64(img[16:], l.Policy)
	copy(img[headerSize:], l.HostData)
	copy(img[headerSize+48:], l.Measurement[:])
	return img, nil
}

// Read reads a PSP disk (or its image) from r.
func Read(r io.Reader) (Launch, error) {
	buf := make([]byte, headerSize+96)
	if _, err := io.ReadFull(r, buf); err != nil {
		return Launch{}, fmt.Errorf("sim psp disk: read: %w", err)
	}
	return Decode(buf)
}

// Decode parses the start of a PSP disk image.
func Decode(b []byte) (Launch, error) {
	if len(b) < headerSize+96 {
		return Launch{}, fmt.Errorf("sim psp disk: %d bytes, want at least %d", len(b), headerSize+96)
	}
	if string(b[:8]) != Magic {
		return Launch{}, fmt.Errorf("sim psp disk: starts with %q, not %q", b[:8], Magic)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != layoutVersion {
		return Launch{}, fmt.Errorf("sim psp disk: version %d, this guest knows %d", v, layoutVersion)
	}
	n := binary.LittleEndian.Uint32(b[12:])
	if n > 48 {
		return Launch{}, fmt.Errorf("sim psp disk: host data length %d, more than 48", n)
	}
	pad := b[headerSize+int(n) : headerSize+48]
	if !bytes.Equal(pad, make([]byte, len(pad))) {
		return Launch{}, errors.New("sim psp disk: bytes after the host data are not zero")
	}
	l := Launch{HostData: bytes.Clone(b[headerSize : headerSize+int(n)]), Policy: binary.LittleEndian.Uint64(b[16:])}
	copy(l.Measurement[:], b[headerSize+48:])
	return l, nil
}

// measurementLabel starts what LaunchMeasurement hashes.
const measurementLabel = "veil-sim-launch-measurement-v1\x00"

// LaunchMeasurement is the sim launch measurement of a direct-boot launch: SHA-384 over the
// label "veil-sim-launch-measurement-v1\0", the SHA-384 of the kernel, the SHA-384 of the initrd
// (both as the guest image manifest lists them, hex) and the SHA-384 of the kernel command line
// the VM boots with. A real SNP launch with kernel-hashes=on measures the same three things
// (with the firmware); the value differs from real hardware's, but it changes exactly when one
// of them does, so a verifier can pin it as a reference value.
func LaunchMeasurement(kernelSHA384, initrdSHA384, cmdline string) ([48]byte, error) {
	k, err := hex.DecodeString(kernelSHA384)
	if err != nil || len(k) != sha512.Size384 {
		return [48]byte{}, fmt.Errorf("sim measurement: kernel SHA-384 %q is not 48 hex bytes", kernelSHA384)
	}
	i, err := hex.DecodeString(initrdSHA384)
	if err != nil || len(i) != sha512.Size384 {
		return [48]byte{}, fmt.Errorf("sim measurement: initrd SHA-384 %q is not 48 hex bytes", initrdSHA384)
	}
	c := sha512.Sum384([]byte(cmdline))
	h := sha512.New384()
	h.Write([]byte(measurementLabel))
	h.Write(k)
	h.Write(i)
	h.Write(c[:])
	var m [48]byte
	copy(m[:], h.Sum(nil))
	return m, nil
}
