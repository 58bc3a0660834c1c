// Package scratch sets up the guest's encrypted scratch storage at boot: it finds the
// virtio-blk disk whose serial is api.ScratchSerial (the host backs it with a sparse file),
// maps it through dm-crypt (AES-XTS, aes-xts-plain64, a 512-bit key from crypto/rand made at
// each boot, held only in the guest kernel, never written or logged), makes an ext2 file
// system on the mapping with the initrd's mke2fs (busybox's), mounts it at api.ScratchDir
// and bind-mounts its directories onto api.ImagesDir, api.ContainersDir and api.EmptyDirDir, so
// that the image cache, the containers' roots and their writable layers, and the pod's emptyDir
// volumes live on the disk instead of in RAM.
//
// The host sees only ciphertext, and since the key dies with the boot, a VM booted again on
// the same file reads noise and formats it afresh. XTS has no integrity: the host can
// corrupt a block or put an older ciphertext of it back unnoticed by dm-crypt (the guest then
// reads garbage for that 4 KiB block, which ext4 may or may not detect), but it cannot read
// or choose plaintext. docs/scratch.md says what that leaves and why.
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

// Mkfs is where the guest image installs mke2fs (busybox-static's, guestimage).
const Mkfs = "/usr/sbin/mke2fs"

// InodeRatio is mke2fs's bytes per inode: one inode per 64 KiB of disk, 160 Ki inodes on a
// 10 GiB disk. mke2fs writes the inode tables at once (256 bytes an inode: 40 MiB there), so a
// smaller ratio costs boot time and host disk.
const InodeRatio = 65536

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
		Control: ControlPath, Mkfs: Mkfs, Name: api.ScratchMapperName, Dir: api.ScratchDir,
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
	if err := setup(ctx, c, dev); err != nil {
		return true, fmt.Errorf("scratch disk %s: %w", dev, err)
	}
	log.G(ctx).Infof("scratch disk %s: dm-crypt %s, ext2 on %s, set up in %s", dev, Cipher, c.Dir,
		time.Since(start).Round(time.Millisecond))
	return true, nil
}

func setup(ctx context.Context, c Config, dev string) error {
	major, minor, sectors, err := blockDevice(dev)
	if err != nil {
		return err
	}
	mapped, err := mapCrypt(c, major, minor, sectors)
	if err != nil {
		return err
	}
	if err := mkfs(ctx, c.Mkfs, mapped); err != nil {
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

// mapCrypt maps the disk major:minor through dm-crypt under a new random key and returns the
// node of the mapping. The key lives in this function's memory (wiped on return) and in the
// kernel's dm-crypt target only.
func mapCrypt(c Config, major, minor uint32, sectors uint64) (node string, err error) {
	key := make([]byte, KeySize)
	defer Wipe(key)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("make a key: %w", err)
	}
	t, err := CryptTarget(key, major, minor, sectors)
	if err != nil {
		return "", err
	}
	defer Wipe(t.Params)
	m, err := OpenMapper(c.Control)
	if err != nil {
		return "", err
	}
	defer m.Close()
	dmMajor, dmMinor, err := m.Create(c.Name)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = m.Remove(c.Name)
		}
	}()
	if err := m.Load(c.Name, []Target{t}); err != nil {
		return "", err
	}
	if err := m.Resume(c.Name); err != nil {
		return "", err
	}
	return blockNode(fmt.Sprintf("/dev/dm-%d", dmMinor), dmMajor, dmMinor)
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

// mkfs makes an ext2 file system (no journal: nothing survives a reboot, so there is nothing
// to recover) with 4 KiB blocks and no reserved blocks on dev.
func mkfs(ctx context.Context, prog, dev string) error {
	cmd := exec.CommandContext(ctx, prog, "-F", "-b", "4096", "-m", "0", "-i", fmt.Sprint(InodeRatio), "-L", "veil-scratch", dev)
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
