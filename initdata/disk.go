package initdata

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The initdata disk is how the host delivers a document to the guest: a small read-only
// virtio-blk device whose serial is DiskSerial. Its content, from byte 0:
//
//	offset 0   8 bytes  DiskMagic, "VEILINIT"
//	offset 8   8 bytes  the document's length n, uint64 little-endian (1 <= n <= MaxDocumentSize)
//	offset 16  n bytes  the document, exactly the bytes whose digest the TEE measured
//	then       zeros up to a multiple of DiskSectorSize (ignored by the reader)
//
// The format carries no digest of its own: the guest hashes the document it read and compares
// that with the launch measurement (SNP HOST_DATA, TDX MRCONFIGID).
const (
	DiskMagic      = "VEILINIT"
	DiskHeaderSize = 16
	DiskSectorSize = 512
	// DiskSerial is the virtio-blk serial of the initdata disk (at most 20 bytes).
	DiskSerial = "veil-initdata"
	// MaxDiskSize is the largest disk EncodeDisk writes: a header and MaxDocumentSize bytes,
	// rounded up to a sector.
	MaxDiskSize = (DiskHeaderSize + MaxDocumentSize + DiskSectorSize - 1) / DiskSectorSize * DiskSectorSize
)

// ErrNoDiskMagic is returned by ReadDisk when the data does not start with DiskMagic.
var ErrNoDiskMagic = errors.New("initdata disk: no " + DiskMagic + " magic")

// EncodeDisk returns the disk image that carries raw, an initdata document.
func EncodeDisk(raw []byte) ([]byte, error) {
	if len(raw) == 0 {
		return nil, errors.New("initdata disk: empty document")
	}
	if len(raw) > MaxDocumentSize {
		return nil, fmt.Errorf("initdata disk: document is %d bytes, more than the %d allowed", len(raw), MaxDocumentSize)
	}
	size := (DiskHeaderSize + len(raw) + DiskSectorSize - 1) / DiskSectorSize * DiskSectorSize
	img := make([]byte, size)
	copy(img, DiskMagic)
	binary.LittleEndian.PutUint64(img[8:DiskHeaderSize], uint64(len(raw)))
	copy(img[DiskHeaderSize:], raw)
	return img, nil
}

// ReadDisk reads the document from r, positioned at the start of an initdata disk. It reads
// no more than the header and the document, so r may be the whole block device.
func ReadDisk(r io.Reader) ([]byte, error) {
	var hdr [DiskHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("initdata disk: read header: %w", truncated(err))
	}
	if string(hdr[:8]) != DiskMagic {
		return nil, fmt.Errorf("%w (starts with %q)", ErrNoDiskMagic, hdr[:8])
	}
	n := binary.LittleEndian.Uint64(hdr[8:])
	if n == 0 {
		return nil, errors.New("initdata disk: empty document (length 0)")
	}
	if n > MaxDocumentSize {
		return nil, fmt.Errorf("initdata disk: document length %d is more than the %d allowed", n, MaxDocumentSize)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("initdata disk: read %d-byte document: %w", n, truncated(err))
	}
	return raw, nil
}

// DecodeDisk returns the document of a disk image held in memory.
func DecodeDisk(img []byte) ([]byte, error) { return ReadDisk(bytes.NewReader(img)) }

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("disk truncated: %w", io.ErrUnexpectedEOF)
	}
	return err
}
