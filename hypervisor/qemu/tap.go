package qemu

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// extraFiles are the files QEMU inherits, in fd order from 3: the vhost-vsock device, then
// the tap.
func (v *VM) extraFiles() []*os.File {
	var files []*os.File
	if v.vhost != nil {
		files = append(files, v.vhost)
	}
	if v.tap != nil {
		files = append(files, v.tap)
	}
	return files
}

// openTap opens the existing tap device name inside the network namespace at nsPath (a
// tun/tap file binds to the namespace of the thread that opens it), as QEMU would with
// ifname=, with a virtio-net header. The thread that enters the namespace is discarded
// afterwards rather than returned to the Go scheduler.
func openTap(nsPath, name string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := openTapInNetns(nsPath, name)
		ch <- result{f, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("qemu: open tap %s in %s: %w", name, nsPath, r.err)
	}
	return r.f, nil
}

func openTapInNetns(nsPath, name string) (*os.File, error) {
	ns, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open netns: %w", err)
	}
	defer unix.Close(ns)
	if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("setns: %w", err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
