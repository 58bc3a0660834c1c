package scratch

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node; devtmpfs makes it when dm-mod loads.
const ControlPath = "/dev/mapper/control"

// Cipher is the dm-crypt cipher of the scratch disk: authenticated encryption in the layout
// of cryptsetup's --integrity hmac-sha256 (without its LUKS header). AES-XTS encrypts each
// 4 KiB sector under a random IV made for each write; HMAC-SHA256 authenticates the sector
// number, the IV and the ciphertext. The MAC and the IV are the sector's tag, which the
// dm-integrity target below stores beside the data; a read whose tag does not match fails
// with an I/O error instead of returning what the host put there.
const Cipher = "capi:authenc(hmac(sha256),xts(aes))-random"

// Key sizes in bytes: the XTS key (two AES-256 keys), then the HMAC key; dm-crypt takes them
// as one key, encryption key first (crypt_copy_authenckey).
const (
	XTSKeySize = 64
	MACKeySize = 32
	KeySize    = XTSKeySize + MACKeySize
)

// Tag sizes in bytes: the HMAC-SHA256 digest and the random IV (XTS's 16-byte tweak) that
// dm-crypt stores with it; TagSize is dm-integrity's tag per sector and dm-crypt's
// integrity:<bytes>:aead.
const (
	MACSize = 32
	IVSize  = 16
	TagSize = MACSize + IVSize
)

// SectorSize is dm-crypt's encryption unit and dm-integrity's block: one tag per 4 KiB costs
// an eighth of the tags and MACs of 512-byte sectors, and the ext4 block size is 4 KiB anyway.
const SectorSize = 4096

// sectorsPerBlock is SectorSize in 512-byte sectors.
const sectorsPerBlock = SectorSize / 512

// IntegrityMode is dm-integrity's write mode: D, direct, without the journal. Data and tag
// are then written separately, so a crash between the two leaves a sector that fails its
// check; that costs nothing here, since nothing on the disk outlives the boot (the key dies
// with it), while the journal (J) would write every block twice.
const IntegrityMode = "D"

// Target is one line of a device-mapper table: Length 512-byte sectors from Start are mapped
// by the target Type with Params.
type Target struct {
	Start, Length uint64
	Type          string
	Params        []byte
}

// IntegrityTarget returns the dm-integrity target over the block device major:minor, of
// length 512-byte sectors: standalone, with TagSize-byte tags that dm-crypt supplies (no
// internal_hash), 4 KiB blocks, no journal writes (IntegrityMode), a journal of one section
// (it is formatted but never used in mode D: the default would write 1/128 of the disk at
// every boot), and fix_padding (the tag area's smaller padding, as cryptsetup sets for new
// devices). Discards are not passed down (no allow_discards).
func IntegrityTarget(devMajor, devMinor uint32, length uint64) (Target, error) {
	if length == 0 || length%sectorsPerBlock != 0 {
		return Target{}, fmt.Errorf("dm-integrity: length %d sectors: want a positive multiple of %d", length, sectorsPerBlock)
	}
	// "<device> <offset> <tag size> <mode> <#opt params> <opt params>"
	p := fmt.Sprintf("%d:%d 0 %d %s 3 block_size:%d fix_padding journal_sectors:1", devMajor, devMinor, TagSize, IntegrityMode, SectorSize)
	return Target{Start: 0, Length: length, Type: "integrity", Params: []byte(p)}, nil
}

// CryptTarget returns the dm-crypt target over the dm-integrity device major:minor of length
// 512-byte sectors (the integrity device's provided data sectors), with key (KeySize bytes:
// XTS key, then HMAC key). Params hold the key in hex: the caller wipes them (Wipe) once the
// table is loaded. Discards are not passed down (no allow_discards): a discard would show the
// host which blocks are free.
func CryptTarget(key []byte, devMajor, devMinor uint32, length uint64) (Target, error) {
	if len(key) != KeySize {
		return Target{}, fmt.Errorf("dm-crypt key: %d bytes, want %d", len(key), KeySize)
	}
	if length == 0 || length%sectorsPerBlock != 0 {
		return Target{}, fmt.Errorf("dm-crypt: length %d sectors: want a positive multiple of %d", length, sectorsPerBlock)
	}
	// "<cipher> <key> <iv_offset> <device> <offset> [<#opt_params> <opt_params>]"
	p := make([]byte, 0, len(Cipher)+2*KeySize+96)
	p = append(p, Cipher...)
	p = append(p, ' ')
	p = hex.AppendEncode(p, key)
	p = append(p, " 0 "...)
	p = strconv.AppendUint(p, uint64(devMajor), 10)
	p = append(p, ':')
	p = strconv.AppendUint(p, uint64(devMinor), 10)
	p = append(p, " 0 2 integrity:"...)
	p = strconv.AppendUint(p, TagSize, 10)
	p = append(p, ":aead sector_size:"...)
	p = strconv.AppendUint(p, SectorSize, 10)
	return Target{Start: 0, Length: length, Type: "crypt", Params: p}, nil
}

// Wipe overwrites b with zeros.
func Wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// ioctlHeader is a dm_ioctl header for the named device with the given flags and a buffer of
// size bytes (header included).
func ioctlHeader(name string, flags uint32, size int) (unix.DmIoctl, error) {
	var h unix.DmIoctl
	if name == "" || len(name) >= len(h.Name) {
		return h, fmt.Errorf("device-mapper name %q: want 1-%d bytes", name, len(h.Name)-1)
	}
	h.Version = [3]uint32{unix.DM_VERSION_MAJOR, 0, 0}
	h.Data_size = uint32(size)
	h.Data_start = unix.SizeofDmIoctl
	h.Flags = flags
	copy(h.Name[:], name)
	return h, nil
}

// align8 rounds n up to a multiple of 8, the alignment of dm_target_spec records.
func align8(n int) int { return (n + 7) &^ 7 }

// TableBuffer is the DM_TABLE_LOAD buffer for device name: the dm_ioctl header, then per
// target a dm_target_spec, its parameters and a NUL, padded to 8 bytes, each spec's next
// field the offset of the following spec from its own start. The buffer holds the params
// (a key): the caller wipes it.
func TableBuffer(name string, targets []Target) ([]byte, error) {
	if len(targets) == 0 {
		return nil, errors.New("device-mapper table: no target")
	}
	size := unix.SizeofDmIoctl
	for _, t := range targets {
		if t.Type == "" || len(t.Type) >= unix.DM_MAX_TYPE_NAME {
			return nil, fmt.Errorf("device-mapper target type %q: want 1-%d bytes", t.Type, unix.DM_MAX_TYPE_NAME-1)
		}
		size += align8(unix.SizeofDmTargetSpec + len(t.Params) + 1)
	}
	// The kernel wipes its copy of a buffer flagged secure when the call is done.
	h, err := ioctlHeader(name, unix.DM_SECURE_DATA_FLAG, size)
	if err != nil {
		return nil, err
	}
	h.Target_count = uint32(len(targets))
	buf := make([]byte, size)
	*(*unix.DmIoctl)(unsafe.Pointer(&buf[0])) = h
	off := unix.SizeofDmIoctl
	for _, t := range targets {
		rec := align8(unix.SizeofDmTargetSpec + len(t.Params) + 1)
		spec := unix.DmTargetSpec{Sector_start: t.Start, Length: t.Length, Next: uint32(rec)}
		copy(spec.Target_type[:], t.Type)
		*(*unix.DmTargetSpec)(unsafe.Pointer(&buf[off])) = spec
		copy(buf[off+unix.SizeofDmTargetSpec:], t.Params)
		off += rec
	}
	return buf, nil
}

// Mapper issues device-mapper ioctls on the control node.
type Mapper struct{ f *os.File }

// OpenMapper opens the control node at path (ControlPath), making it (misc 10:236) when
// devtmpfs has not.
func OpenMapper(path string) (*Mapper, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll("/dev/mapper", 0o755); err != nil {
			return nil, fmt.Errorf("device-mapper: %w", err)
		}
		if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 236))); err != nil {
			return nil, fmt.Errorf("device-mapper: mknod %s: %w", path, err)
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("device-mapper: open %s (is dm-mod loaded?): %w", path, err)
	}
	return &Mapper{f: f}, nil
}

// Close closes the control node.
func (m *Mapper) Close() error { return m.f.Close() }

func (m *Mapper) ioctl(req uint, buf []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, m.f.Fd(), uintptr(req), uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// simple issues an ioctl whose buffer is the header alone and returns the header the kernel
// wrote back.
func (m *Mapper) simple(req uint, name string, flags uint32) (unix.DmIoctl, error) {
	h, err := ioctlHeader(name, flags, unix.SizeofDmIoctl)
	if err != nil {
		return h, err
	}
	buf := make([]byte, unix.SizeofDmIoctl)
	*(*unix.DmIoctl)(unsafe.Pointer(&buf[0])) = h
	if err := m.ioctl(req, buf); err != nil {
		return h, err
	}
	return *(*unix.DmIoctl)(unsafe.Pointer(&buf[0])), nil
}

// Create makes an inactive device called name, with no table, and returns its device number.
func (m *Mapper) Create(name string) (major, minor uint32, err error) {
	h, err := m.simple(unix.DM_DEV_CREATE, name, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("device-mapper: create %s: %w", name, err)
	}
	return unix.Major(h.Dev), unix.Minor(h.Dev), nil
}

// Load loads targets as the inactive table of device name. The ioctl buffer, which holds the
// targets' params, is wiped before Load returns.
func (m *Mapper) Load(name string, targets []Target) error {
	buf, err := TableBuffer(name, targets)
	if err != nil {
		return err
	}
	defer Wipe(buf)
	if err := m.ioctl(unix.DM_TABLE_LOAD, buf); err != nil {
		return fmt.Errorf("device-mapper: load the %s table of %s: %w", targets[0].Type, name, err)
	}
	return nil
}

// Resume makes the loaded table of device name live.
func (m *Mapper) Resume(name string) error {
	if _, err := m.simple(unix.DM_DEV_SUSPEND, name, 0); err != nil {
		return fmt.Errorf("device-mapper: resume %s: %w", name, err)
	}
	return nil
}

// Remove removes device name (it must not be open).
func (m *Mapper) Remove(name string) error {
	if _, err := m.simple(unix.DM_DEV_REMOVE, name, 0); err != nil {
		return fmt.Errorf("device-mapper: remove %s: %w", name, err)
	}
	return nil
}
