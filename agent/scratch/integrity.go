package scratch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// integrityMagic opens a dm-integrity superblock (SB_MAGIC, NUL included).
var integrityMagic = []byte("integrt\x00")

// SuperblockSize is what dm-integrity reads as its superblock (SB_SECTORS): it formats the
// device only if these bytes are all zero.
const SuperblockSize = 4096

// ProvidedSectors returns provided_data_sectors, the data capacity in 512-byte sectors, from
// the dm-integrity superblock sb (struct superblock in drivers/md/dm-integrity.c: magic[8],
// version, log2_interleave_sectors, le16 integrity_tag_size, le32 journal_sections, le64
// provided_data_sectors, le32 flags, log2_sectors_per_block, ...), checked against what this
// package formats: TagSize tags, SectorSize blocks, at most diskSectors. The host can write
// the superblock; what it can gain by that is a failed boot or a smaller disk, never a read
// that skips the MAC (dm-crypt checks every tag), and the bounds here keep a forged size from
// going past the disk. The result is rounded down to whole blocks.
func ProvidedSectors(sb []byte, diskSectors uint64) (uint64, error) {
	if len(sb) < 29 || !bytes.Equal(sb[:8], integrityMagic) {
		return 0, fmt.Errorf("dm-integrity superblock: no magic %q", integrityMagic[:7])
	}
	le := binary.LittleEndian
	if tag := le.Uint16(sb[10:]); tag != TagSize {
		return 0, fmt.Errorf("dm-integrity superblock: tag size %d, want %d", tag, TagSize)
	}
	if l := sb[28]; 1<<l != sectorsPerBlock {
		return 0, fmt.Errorf("dm-integrity superblock: %d sectors per block, want %d", 1<<l, sectorsPerBlock)
	}
	n := le.Uint64(sb[16:]) &^ (sectorsPerBlock - 1)
	if n == 0 || n > diskSectors {
		return 0, fmt.Errorf("dm-integrity superblock: %d data sectors on a disk of %d", le.Uint64(sb[16:]), diskSectors)
	}
	return n, nil
}

// GroupBlocks is busybox mke2fs's blocks per group with 4 KiB blocks (8 × the block size:
// one block bitmap block per group).
const GroupBlocks = 8 * SectorSize

// GroupStarts returns the byte offsets, on a file system of length 512-byte sectors, of the
// first block of each ext2 block group: where busybox's mke2fs writes the superblock and its
// backups, 1 KiB at a time. Any write smaller than a block makes the kernel read the block
// first; on the authenticated disk a block never written this boot has no valid tag, so that
// read fails. Setup writes these blocks whole first (zeros), and mke2fs writes every other
// block of its metadata whole.
func GroupStarts(length uint64) []int64 {
	blocks := length / sectorsPerBlock
	var offs []int64
	for b := uint64(0); b < blocks; b += GroupBlocks {
		offs = append(offs, int64(b*SectorSize))
	}
	return offs
}

// alignedBlock returns a zeroed SectorSize buffer aligned for O_DIRECT.
func alignedBlock() []byte {
	buf := make([]byte, 2*SectorSize)
	off := int(-uintptr(unsafe.Pointer(&buf[0])) & (SectorSize - 1))
	return buf[off : off+SectorSize]
}

// writeZeroBlocks writes a block of zeros at each of offs on the block device at path, with
// O_DIRECT (past the page cache), and flushes the device.
func writeZeroBlocks(path string, offs []int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := alignedBlock()
	for _, off := range offs {
		if _, err := f.WriteAt(buf, off); err != nil {
			return fmt.Errorf("write zeros at %d: %w", off, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("flush %s: %w", path, err)
	}
	return f.Close()
}

// readSuperblock reads the first SuperblockSize bytes of the block device at path with
// O_DIRECT: the page cache may hold what the partition scan read before dm-integrity wrote.
func readSuperblock(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := alignedBlock()
	if _, err := f.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("read the dm-integrity superblock of %s: %w", path, err)
	}
	return buf, nil
}
