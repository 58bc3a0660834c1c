package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"
)

const (
	// hostPollInterval is how often the listener looks whether the host has connected: a
	// virtio port reports POLLHUP (and reads return EOF) while nobody is connected on the host
	// side, so poll(2) cannot simply block until the host arrives.
	hostPollInterval = 50 * time.Millisecond
	// sessionBackoff separates two sessions, so that a host that keeps sending garbage does
	// not make the agent spin.
	sessionBackoff = 100 * time.Millisecond
)

// VirtioSerialListener accepts ttrpc connections over a virtio-serial port. The port is one
// byte stream, so it carries a yamux session in which the agent is the server: each stream
// the host opens is one accepted connection. When the host disconnects, the session ends,
// its streams fail, and the listener waits for the host to connect again and starts a new
// session on the same port.
type VirtioSerialListener struct {
	port *os.File
	addr portAddr
	log  *log.Entry

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ net.Listener = (*VirtioSerialListener)(nil)

// FindVirtioPort returns the device (devDir/vportNpM) of the virtio-serial port called name,
// looking through sysDir (normally /sys/class/virtio-ports). The error wraps os.ErrNotExist
// when no port has that name.
func FindVirtioPort(sysDir, devDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		return "", fmt.Errorf("look for virtio-serial port %q: %w", name, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue // a port without a name
		}
		if strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, e.Name()), nil
		}
	}
	return "", fmt.Errorf("no virtio-serial port named %q in %s: %w", name, sysDir, os.ErrNotExist)
}

// ListenVirtioSerial opens the virtio-serial device dev (for example /dev/vport1p1) and
// serves yamux sessions on it until Close.
func ListenVirtioSerial(ctx context.Context, dev string) (*VirtioSerialListener, error) {
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open virtio-serial port: %w", err)
	}
	// A session ends by setting deadlines on the port, which needs a pollable descriptor.
	if err := f.SetDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("virtio-serial port %s cannot be polled: %w", dev, err)
	}
	return newVirtioSerialListener(ctx, f, dev), nil
}

// newVirtioSerialListener serves on port, an open file that behaves like a virtio port: poll
// reports POLLHUP while the host is not connected. Tests pass a pty master.
func newVirtioSerialListener(ctx context.Context, port *os.File, name string) *VirtioSerialListener {
	l := &VirtioSerialListener{
		port:  port,
		addr:  portAddr(name),
		log:   log.G(ctx).WithField("port", name),
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
	}
	l.wg.Add(1)
	go l.run()
	return l
}

// Accept returns the next stream a host opened.
func (l *VirtioSerialListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: l.addr.Network(), Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close ends the current session, its streams and the wait for the host, and closes the port.
func (l *VirtioSerialListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.port.Close()
		l.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("close virtio-serial port %s: %w", l.addr, err)
	}
	return nil
}

// Addr returns the port's device path.
func (l *VirtioSerialListener) Addr() net.Addr { return l.addr }

func (l *VirtioSerialListener) run() {
	defer l.wg.Done()
	for {
		if err := l.waitHost(); err != nil {
			if !l.closed() {
				l.log.WithError(err).Error("virtio-serial port failed; no more sessions on it")
			}
			return
		}
		l.serveSession()
		select {
		case <-l.done:
			return
		case <-time.After(sessionBackoff):
		}
	}
}

// waitHost returns when the host side of the port is connected.
func (l *VirtioSerialListener) waitHost() error {
	for {
		ok, err := hostConnected(l.port)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-l.done:
			return net.ErrClosed
		case <-time.After(hostPollInterval):
		}
	}
}

// serveSession runs one yamux server session until the host goes away or the listener is
// closed, handing every stream to Accept.
func (l *VirtioSerialListener) serveSession() {
	conn := &portConn{f: l.port}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput, cfg.Logger = nil, yamuxLogger{l.log}
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		l.log.WithError(err).Error("start yamux session")
		return
	}
	l.log.Info("host connected: yamux session started")
	for {
		stream, err := sess.AcceptStream()
		if err != nil {
			break
		}
		select {
		case l.conns <- stream:
			continue
		case <-l.done:
			_ = stream.Close()
		}
		break
	}
	_ = sess.Close() // waits for the session's reader and writer
	if err := conn.reset(); err != nil && !l.closed() {
		l.log.WithError(err).Warn("reset virtio-serial port deadlines")
	}
	if !l.closed() {
		l.log.Info("host disconnected: yamux session ended")
	}
}

func (l *VirtioSerialListener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// hostConnected reports whether poll(2) says the port is writable and not hung up.
func hostConnected(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("poll virtio-serial port: %w", err)
	}
	var (
		revents int16
		perr    error
	)
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		for {
			if _, perr = unix.Poll(fds, 0); perr != unix.EINTR {
				break
			}
		}
		revents = fds[0].Revents
	})
	switch {
	case err != nil:
		return false, fmt.Errorf("poll virtio-serial port: %w", err)
	case perr != nil:
		return false, fmt.Errorf("poll virtio-serial port: %w", perr)
	case revents&(unix.POLLERR|unix.POLLNVAL) != 0:
		return false, fmt.Errorf("poll virtio-serial port: error or invalid descriptor (revents %#x)", revents)
	}
	return revents&unix.POLLOUT != 0 && revents&unix.POLLHUP == 0, nil
}

// portConn is the port as one session sees it: closing it aborts the session's pending reads
// and writes (through deadlines) but keeps the port open for the next session.
type portConn struct{ f *os.File }

func (c *portConn) Read(p []byte) (int, error)  { return c.f.Read(p) }
func (c *portConn) Write(p []byte) (int, error) { return c.f.Write(p) }
func (c *portConn) Close() error                { return c.f.SetDeadline(time.Now()) }
func (c *portConn) reset() error                { return c.f.SetDeadline(time.Time{}) }

// portAddr is a virtio-serial port's address: its device path.
type portAddr string

func (a portAddr) Network() string { return "virtio-serial" }
func (a portAddr) String() string  { return string(a) }

// yamuxLogger sends yamux's own messages (mostly "connection reset" noise) to debug level.
type yamuxLogger struct{ e *log.Entry }

func (y yamuxLogger) Print(v ...any)                 { y.e.Debug(v...) }
func (y yamuxLogger) Printf(format string, v ...any) { y.e.Debugf(format, v...) }
func (y yamuxLogger) Println(v ...any)               { y.e.Debugln(v...) }
