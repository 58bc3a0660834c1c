package qemu

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	vhostVsockDevice = "/dev/vhost-vsock"
	// VHOST_VSOCK_SET_GUEST_CID: _IOW(VHOST_VIRTIO=0xAF, 0x60, __u64)
	vhostVsockSetGuestCID = 0x4008af60
	cidAttempts           = 256
)

// hasVhostVsock reports whether the host can give guests a vsock device.
func hasVhostVsock() bool {
	_, err := os.Stat(vhostVsockDevice)
	return err == nil
}

// reserveCID opens /dev/vhost-vsock and claims a free guest context id on it. The open file
// holds the id until QEMU, which receives it as vhostfd, takes over (or until it is closed):
// two VMs can never race for the same id.
func reserveCID() (uint32, *os.File, error) {
	f, err := os.OpenFile(vhostVsockDevice, os.O_RDWR, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("qemu: vsock: %w", err)
	}
	for range cidAttempts {
		cid := uint64(3 + rand.Uint32N(1<<31)) // 0-2 are reserved; stay well clear of ^0
		err = setGuestCID(f, cid)
		if err == nil {
			return uint32(cid), f, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	_ = f.Close()
	return 0, nil, fmt.Errorf("qemu: vsock: claim a guest cid: %w", err)
}

func setGuestCID(f *os.File, cid uint64) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), vhostVsockSetGuestCID, uintptr(unsafe.Pointer(&cid)))
	if errno != 0 {
		return errno
	}
	return nil
}
