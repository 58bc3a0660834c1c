package sim

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// The sim "PSP channel": what a real secure processor would measure and report about a launch,
// handed by the host to a guest of the simulated TEE. A real PSP takes HOST_DATA and the guest
// policy from the launch commands and computes MEASUREMENT itself; in the simulation the host
// (the shim) computes them and delivers them on a small read-only virtio-blk disk with the
// serial PSPDiskSerial, one sector in the PSPLaunch.Encode format. The guest's sim attester
// copies them into the reports it signs.
const (
	// PSPDiskSerial is the virtio-blk serial of the sim PSP disk.
	PSPDiskSerial = "veil-sim-psp"
	// PSPMagic starts the disk.
	PSPMagic = "VEILPSP1"
	// PSPDiskSize is the size of the disk image: one sector.
	PSPDiskSize = 512
	// GuestAuthorityPath is where a guest image carries the sim authority (veil-image build
	// --sim-authority). An image without it cannot run as a sim guest.
	GuestAuthorityPath = "/etc/veil/sim-authority.pem"
	// KernelParam selects the simulated TEE in the guest: veil.tee=sim.
	KernelParam = "veil.tee"
	// KernelParamSim is KernelParam's value that selects it.
	KernelParamSim = "sim"
)

// pspHeaderSize is magic (8), version (4), host-data length (4), policy (8).
const pspHeaderSize = 24

// pspVersion is the layout below.
const pspVersion = 1

// PSPLaunch is what the sim PSP reports about one launch.
//
// Disk layout (little-endian): 0 magic "VEILPSP1" | 8 u32 version (1) | 12 u32 host-data
// length (0..48) | 16 u64 SNP guest policy | 24 host data (48 bytes, zero-padded) | 72
// measurement (48 bytes) | zeros to 512.
type PSPLaunch struct {
	// HostData is the launch's host data as the host gave it (at most 48 bytes): SNP
	// HOST_DATA takes its first 32 bytes, TDX MRCONFIGID all 48 (zero-padded).
	HostData []byte
	// Measurement is the launch measurement (see LaunchMeasurement).
	Measurement [48]byte
	// Policy is the SNP guest policy; 0 means DefaultSNPPolicy.
	Policy uint64
}

// Encode returns the PSP disk image.
func (l PSPLaunch) Encode() ([]byte, error) {
	if len(l.HostData) > 48 {
		return nil, fmt.Errorf("sim psp: host data has %d bytes, more than 48", len(l.HostData))
	}
	img := make([]byte, PSPDiskSize)
	copy(img, PSPMagic)
	binary.LittleEndian.PutUint32(img[8:], pspVersion)
	binary.LittleEndian.PutUint32(img[12:], uint32(len(l.HostData)))
	binary.LittleEndian.PutUint64(img[16:], l.Policy)
	copy(img[pspHeaderSize:], l.HostData)
	copy(img[pspHeaderSize+48:], l.Measurement[:])
	return img, nil
}

// ReadPSP reads a PSP disk (or its image) from r.
func ReadPSP(r io.Reader) (PSPLaunch, error) {
	buf := make([]byte, pspHeaderSize+96)
	if _, err := io.ReadFull(r, buf); err != nil {
		return PSPLaunch{}, fmt.Errorf("sim psp disk: read: %w", err)
	}
	return DecodePSP(buf)
}

// DecodePSP parses the start of a PSP disk image.
func DecodePSP(b []byte) (PSPLaunch, error) {
	if len(b) < pspHeaderSize+96 {
		return PSPLaunch{}, fmt.Errorf("sim psp disk: %d bytes, want at least %d", len(b), pspHeaderSize+96)
	}
	if string(b[:8]) != PSPMagic {
		return PSPLaunch{}, fmt.Errorf("sim psp disk: starts with %q, not %q", b[:8], PSPMagic)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != pspVersion {
		return PSPLaunch{}, fmt.Errorf("sim psp disk: version %d, this guest knows %d", v, pspVersion)
	}
	n := binary.LittleEndian.Uint32(b[12:])
	if n > 48 {
		return PSPLaunch{}, fmt.Errorf("sim psp disk: host data length %d, more than 48", n)
	}
	pad := b[pspHeaderSize+int(n) : pspHeaderSize+48]
	if !bytes.Equal(pad, make([]byte, len(pad))) {
		return PSPLaunch{}, errors.New("sim psp disk: bytes after the host data are not zero")
	}
	l := PSPLaunch{HostData: bytes.Clone(b[pspHeaderSize : pspHeaderSize+int(n)]), Policy: binary.LittleEndian.Uint64(b[16:])}
	copy(l.Measurement[:], b[pspHeaderSize+48:])
	return l, nil
}

// SNP returns the SNP launch the sim attester signs reports for: HOST_DATA is the host data's
// first 32 bytes, zero-padded.
func (l PSPLaunch) SNP() SNPLaunch {
	s := SNPLaunch{Measurement: l.Measurement, Policy: l.Policy}
	copy(s.HostData[:], l.HostData)
	return s
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
