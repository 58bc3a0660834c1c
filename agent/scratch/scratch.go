// Package scratch sets up the guest's encrypted scratch storage at boot: it finds the
// virtio-blk disk whose serial is api.ScratchSerial (the host backs it with a sparse file),
// maps it through dm-integrity and dm-crypt with authenticated encryption (AES-XTS with a
// random IV and HMAC-SHA256, Cipher; a 768-bit key from crypto/rand made at each boot, held
// only in the guest kernel, never written or logged), makes an ext2 file
// system on the mapping with the initrd's mke2fs (busybox's), mounts it at api.ScratchDir
// and bind-mounts its directories onto api.ImagesDir, api.ContainersDir and api.EmptyDirDir, so
// that the image cache, the containers' roots and their writable layers, and the pod's emptyDir
// volumes live on the disk instead of in RAM.
//
// The host sees only ciphertext, and since the key dies with the boot, a VM booted again on
// the same file formats it afresh. A block the host changes or moves fails its MAC: the
// guest's read fails (EILSEQ), never returns the altered data. What is left is replay: the host
// can put back an older (data, tag) pair of the same block from the same boot, which
// dm-integrity keeps no counter to detect. docs/scratch.md says what that leaves and why.
//
// Without a disk nothing happens: the data stay in RAM as before, and the log says so once. A
// disk that is there but cannot be set up is an error that stops the boot: a confidential
// guest never falls back to RAM silently.
package scratch

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
	"unsafe"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/launch"
)

// The file system's inodes. busybox's mke2fs writes every inode table out at format time
// (no lazy_itable_init), through dm-integrity's HMAC and dm-crypt, so their size is boot time
// and host disk: 128-byte inodes (ext2's classic size: no nanosecond timestamps, which per-boot
// scratch does not need), one per MaxInodeRatio bytes on a large disk and never fewer than
// about MinInodes on a small one (busybox's mke2fs takes a ratio, -i, not a count). A 10 GiB
// disk gets 40 Ki inodes in 5 MiB of tables (it had 160 Ki in 40 MiB, set up in 7.6 s under
// TCG); a 2 GiB disk 32 Ki (a large Python image holds about 25 Ki files).
const (
	InodeSize     = 128
	MaxInodeRatio = 256 << 10
	MinInodes     = 32 << 10
)

// InodeRatio is mke2fs's bytes per inode for a file system of dataBytes: MaxInodeRatio, or
// less (a multiple of 1 KiB, at least 4 KiB) where that would leave fewer than MinInodes.
func InodeRatio(dataBytes uint64) uint64 {
	r := min(dataBytes/MinInodes, MaxInodeRatio) &^ 1023
	return max(r, 4096)
}

// Config says where Setup looks and what it mounts.
type Config struct {
	Paths  launch.Paths
	Serial string
	// Wait bounds the wait for a virtio block device that is still being probed.
	Wait time.Duration
	// Control is the device-mapper control node, Mkfs the mke2fs program.
	Control, Mkfs string
	// Name is the device-mapper name of the decrypted disk.
	Name string
	// Dir is where the file system is mounted; Binds are (directory of Dir, target) pairs
	// bind-mounted after.
	Dir   string
	Binds [][2]string
}

// DefaultConfig is the guest's.
func DefaultConfig() Config {
	return Config{
		Paths: launch.DefaultPaths, Serial: api.ScratchSerial, Wait: 5 * time.Second,
		Control: ControlPath, Mkfs: api.MkfsPath, Name: api.ScratchMapperName, Dir: api.ScratchDir,
		Binds: [][2]string{{api.ScratchImages, api.ImagesDir}, {api.ScratchContainers, api.ContainersDir},
			{api.ScratchEmptyDirs, api.EmptyDirDir}},
	}
}

// Setup finds the scratch disk and, when there is one, encrypts, formats and mounts it. It
// reports whether there was a disk; every error is one line that starts with "scratch disk".
func Setup(ctx context.Context, c Config) (bool, error) {
	dev, err := launch.FindDevice(ctx, c.Paths, c.Serial, c.Wait)
	if err != nil {
		return false, fmt.Errorf("scratch disk: %w", err)
	}
	if dev == "" {
		log.G(ctx).Infof("no scratch disk (serial %q): images, containers' writable data and emptyDir volumes stay in guest RAM", c.Serial)
		return false, nil
	}
	start := time.Now()
	sectors, provided, err := setup(ctx, c, dev)
	if err != nil {
		return true, fmt.Errorf("scratch disk %s: %w", dev, err)
	}
	log.G(ctx).Infof("scratch disk %s: dm-crypt %s on dm-integrity (%d-byte tags), ext2 on %s, set up in %s; %d of %d MiB for data",
		dev, Cipher, TagSize, c.Dir, time.Since(start).Round(time.Millisecond), mib(provided), mib(sectors))
	return true, nil
}

// mib is 512-byte sectors in MiB.
func mib(sectors uint64) uint64 { return sectors >> 11 }

// setup sets the disk dev up and returns its size and the mapping's, in 512-byte sectors.
func setup(ctx context.Context, c Config, dev string) (sectors, provided uint64, err error) {
	major, minor, sectors, err := blockDevice(dev)
	if err != nil {
		return 0, 0, err
	}
	mapped, provided, err := mapDisk(c, dev, major, minor, sectors)
	if err != nil {
		return 0, 0, err
	}
	return sectors, provided, mount(ctx, c, mapped, provided)
}

// mount makes the file system on mapped (provided sectors), mounts it and binds its directories.
func mount(ctx context.Context, c Config, mapped string, provided uint64) error {
	if err := mkfs(ctx, c.Mkfs, mapped, provided*512); err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	// No journal to replay, nothing to check: the file system is new at every boot. An error
	// (a block the host changed) makes it read-only rather than go on writing over it.
	if err := unix.Mount(mapped, c.Dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "errors=remount-ro"); err != nil {
		return fmt.Errorf("mount %s on %s: %w", mapped, c.Dir, err)
	}
	for _, b := range c.Binds {
		if err := os.MkdirAll(b[0], 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(b[1], 0o755); err != nil {
			return err
		}
		if err := unix.Mount(b[0], b[1], "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s onto %s: %w", b[0], b[1], err)
		}
	}
	return nil
}

// blockDevice returns the device number and size in 512-byte sectors of the block device at
// path.
func blockDevice(path string) (major, minor uint32, sectors uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, 0, fmt.Errorf("%s is not a block device", path)
	}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, 0, 0, fmt.Errorf("size of %s: %w", path, errno)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev), size / 512, nil
}

// mapDisk maps the disk dev (major:minor, sectors 512-byte sectors) through dm-integrity and,
// on top, dm-crypt with authenticated encryption under a new random key, and returns the node
// of the decrypted mapping. The key lives in this function's memory (wiped on return) and in
// the kernel's dm-crypt target only.
//
// dm-integrity formats a device whose superblock is zero when its table is loaded, and only
// then says how much data the device holds (provided_data_sectors, after its tags and
// superblock): so the guest zeroes the superblock (a disk of an earlier boot holds one),
// loads a one-block table to have the kernel format it, reads the size back and loads the
// real table, as the kernel's dm-integrity.rst describes.
func mapDisk(c Config, dev string, major, minor uint32, sectors uint64) (node string, provided uint64, err error) {
	key := make([]byte, KeySize)
	defer Wipe(key)
	if _, err := rand.Read(key); err != nil {
		return "", 0, fmt.Errorf("make a key: %w", err)
	}
	m, err := OpenMapper(c.Control)
	if err != nil {
		return "", 0, err
	}
	defer m.Close()
	intName := c.Name + "-integrity"
	var made []string
	defer func() {
		if err != nil {
			for i := len(made) - 1; i >= 0; i-- {
				_ = m.Remove(made[i])
			}
		}
	}()
	// Format.
	if err := writeZeroBlocks(dev, []int64{0}); err != nil {
		return "", 0, fmt.Errorf("clear the dm-integrity superblock: %w", err)
	}
	one, err := IntegrityTarget(major, minor, sectorsPerBlock)
	if err != nil {
		return "", 0, err
	}
	if _, _, err := m.Create(intName); err != nil {
		return "", 0, err
	}
	made = append(made, intName)
	if err := m.Load(intName, []Target{one}); err != nil {
		return "", 0, err
	}
	if err := m.Remove(intName); err != nil {
		return "", 0, err
	}
	made = made[:0]
	sb, err := readSuperblock(dev)
	if err != nil {
		return "", 0, err
	}
	provided, err = ProvidedSectors(sb, sectors)
	if err != nil {
		return "", 0, err
	}
	// The integrity device, then dm-crypt on it.
	it, err := IntegrityTarget(major, minor, provided)
	if err != nil {
		return "", 0, err
	}
	intMajor, intMinor, err := m.Create(intName)
	if err != nil {
		return "", 0, err
	}
	made = append(made, intName)
	if err := m.Load(intName, []Target{it}); err != nil {
		return "", 0, err
	}
	if err := m.Resume(intName); err != nil {
		return "", 0, err
	}
	ct, err := CryptTarget(key, intMajor, intMinor, provided)
	if err != nil {
		return "", 0, err
	}
	defer Wipe(ct.Params)
	dmMajor, dmMinor, err := m.Create(c.Name)
	if err != nil {
		return "", 0, err
	}
	made = append(made, c.Name)
	if err := m.Load(c.Name, []Target{ct}); err != nil {
		return "", 0, err
	}
	if err := m.Resume(c.Name); err != nil {
		return "", 0, err
	}
	node, err = blockNode(fmt.Sprintf("/dev/dm-%d", dmMinor), dmMajor, dmMinor)
	if err != nil {
		return "", 0, err
	}
	// Give the blocks mke2fs writes in part a valid tag first (GroupStarts).
	if err := writeZeroBlocks(node, GroupStarts(provided)); err != nil {
		return "", 0, fmt.Errorf("initialise the superblock blocks of %s: %w", node, err)
	}
	return node, provided, nil
}

// blockNode returns path, making it block device major:minor when devtmpfs has not; an
// existing node must be that device.
func blockNode(path string, major, minor uint32) (string, error) {
	rdev := unix.Mkdev(major, minor)
	var st unix.Stat_t
	err := unix.Stat(path, &st)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(rdev)); err != nil {
			return "", fmt.Errorf("mknod %s: %w", path, err)
		}
		return path, nil
	}
	if err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != rdev {
		return "", fmt.Errorf("%s is not block device %d:%d", path, major, minor)
	}
	return path, nil
}

// MkfsArgs are mke2fs's arguments for a file system of dataBytes on dev.
func MkfsArgs(dev string, dataBytes uint64) []string {
	return []string{"-F", "-b", "4096", "-m", "0", "-I", fmt.Sprint(InodeSize), "-i", fmt.Sprint(InodeRatio(dataBytes)), "-L", "veil-scratch", dev}
}

// mkfs makes an ext2 file system (no journal: nothing survives a reboot, so there is nothing
// to recover) with 4 KiB blocks, no reserved blocks and InodeRatio(dataBytes) on dev.
func mkfs(ctx context.Context, prog, dev string, dataBytes uint64) error {
	cmd := exec.CommandContext(ctx, prog, MkfsArgs(dev, dataBytes)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.Join(strings.Fields(out.String()), " ")
		if len(msg) > 300 {
			msg = msg[len(msg)-300:]
		}
		return fmt.Errorf("mkfs (%s) on %s: %w: %s", prog, dev, err, msg)
	}
	return nil
}
