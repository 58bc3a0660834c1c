package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Paths says where FindDevice looks; DefaultPaths are the guest's.
type Paths struct {
	SysBlock  string // /sys/block: one directory per disk, with "serial" and "dev"
	VirtioBus string // /sys/bus/virtio/devices: virtio devices, probed or not
	DevDir    string // /dev: where the disk's node is (or is made)
}

// DefaultPaths are the paths of a Veil guest.
var DefaultPaths = Paths{SysBlock: "/sys/block", VirtioBus: "/sys/bus/virtio/devices", DevDir: "/dev"}

// virtioBlockID is the virtio device id of a block device (/sys/bus/virtio/devices/*/device).
const virtioBlockID = "0x0002"

// FindDevice returns the node (/dev/vdX) of the virtio disk whose serial is serial, or "" when
// there is none. The guest has no udev: it reads /sys/block/vd*/serial and makes the node with
// mknod when devtmpfs has not. A virtio block device that the bus shows but that has no disk
// yet (virtio_blk still probing) is waited for, up to wait. Two disks with the serial are an
// error: the host must not be able to choose which one the guest reads.
func FindDevice(ctx context.Context, p Paths, serial string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		disks, matches, err := scanDisks(p.SysBlock, serial)
		if err != nil {
			return "", err
		}
		switch {
		case len(matches) > 1:
			return "", fmt.Errorf("find disk: %d disks (%s) have the serial %q", len(matches), strings.Join(matches, ", "), serial)
		case len(matches) == 1:
			return ensureNode(p, matches[0])
		}
		if virtioBlockDevices(p.VirtioBus) <= disks || time.Now().After(deadline) {
			return "", nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("find disk: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// scanDisks returns how many virtio disks (vd*) sysBlock lists and the names of those whose
// serial is serial.
func scanDisks(sysBlock, serial string) (int, []string, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return 0, nil, fmt.Errorf("find disk: %w", err)
	}
	n := 0
	var matches []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "vd") {
			continue
		}
		n++
		b, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "serial"))
		if err != nil {
			continue // a disk without a serial attribute is not ours
		}
		if strings.TrimRight(string(b), "\n\x00 ") == serial {
			matches = append(matches, e.Name())
		}
	}
	slices.Sort(matches)
	return n, matches, nil
}

// virtioBlockDevices counts the virtio block devices on the bus, probed or not.
func virtioBlockDevices(bus string) int {
	entries, err := os.ReadDir(bus)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(bus, e.Name(), "device"))
		if err == nil && strings.TrimSpace(string(b)) == virtioBlockID {
			n++
		}
	}
	return n
}

// ensureNode returns DevDir/name, making it a block device node with the numbers of
// SysBlock/name/dev when it does not exist. An existing node must be that block device.
func ensureNode(p Paths, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.SysBlock, name, "dev"))
	if err != nil {
		return "", fmt.Errorf("disk %s: %w", name, err)
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	major, err1 := strconv.ParseUint(maj, 10, 32)
	minor, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return "", fmt.Errorf("disk %s: device number %q is not MAJOR:MINOR", name, b)
	}
	rdev := unix.Mkdev(uint32(major), uint32(minor))
	node := filepath.Join(p.DevDir, name)
	var st unix.Stat_t
	err = unix.Stat(node, &st)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(rdev)); err != nil {
			return "", fmt.Errorf("disk %s: mknod %s: %w", name, node, err)
		}
		return node, nil
	}
	if err != nil {
		return "", fmt.Errorf("disk %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != rdev {
		return "", fmt.Errorf("disk %s: %s is not block device %d:%d", name, node, major, minor)
	}
	return node, nil
}
