package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// A pty master stands in for the virtio port: like the port, it polls POLLHUP while nobody
// holds the other end (the slave, here the "host"), and stops when the slave is opened again.
func TestVirtioSerialSessions(t *testing.T) {
	master, slaveName := openPty(t) // the host is not connected yet

	if ok, err := hostConnected(master); err != nil || ok {
		t.Fatalf("hostConnected before the host opened the port = %v, %v; want false, nil", ok, err)
	}
	l := newVirtioSerialListener(context.Background(), master, "pty")
	defer l.Close()

	// Two rounds: the listener must start a new session after the host went away.
	for round := 1; round <= 2; round++ {
		time.Sleep(3 * hostPollInterval) // the listener is waiting for the host
		host := openHostEnd(t, slaveName)
		cfg := yamux.DefaultConfig()
		cfg.LogOutput = io.Discard
		client, err := yamux.Client(host, cfg)
		if err != nil {
			t.Fatalf("round %d: yamux client: %v", round, err)
		}
		var conns []net.Conn
		for i := 0; i < 2; i++ { // two streams: two connections
			stream, err := client.Open()
			if err != nil {
				t.Fatalf("round %d: open stream: %v", round, err)
			}
			srv := acceptWithin(t, l, 5*time.Second)
			echo(t, stream, srv)
			conns = append(conns, srv)
		}
		_ = client.Close()
		_ = host.Close()
		for _, c := range conns { // the host went away: its connections fail
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("round %d: read on a connection of a dead session = %v, want a session error", round, err)
			}
			_ = c.Close()
		}
	}
}

func TestVirtioSerialClose(t *testing.T) {
	master, slaveName := openPty(t)
	defer openHostEnd(t, slaveName).Close()
	l := newVirtioSerialListener(context.Background(), master, "pty")
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestFindVirtioPort(t *testing.T) {
	sys := t.TempDir()
	for port, name := range map[string]string{"vport1p1": "org.qemu.guest_agent.0", "vport1p2": api.AgentPortName} {
		if err := os.MkdirAll(filepath.Join(sys, port), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, port, "name"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.MkdirAll(filepath.Join(sys, "vport1p3"), 0o755) // no name file
	got, err := FindVirtioPort(sys, "/dev", api.AgentPortName)
	if err != nil || got != "/dev/vport1p2" {
		t.Fatalf("FindVirtioPort = %q, %v; want /dev/vport1p2", got, err)
	}
	if _, err := FindVirtioPort(sys, "/dev", "missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing port: err = %v, want os.ErrNotExist", err)
	}
	if _, err := FindVirtioPort(filepath.Join(sys, "nope"), "/dev", "x"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing sys dir: err = %v, want os.ErrNotExist", err)
	}
}

func TestListenAddresses(t *testing.T) {
	ctx := context.Background()
	for _, bad := range []string{"", "unix:", "tcp:1.2.3.4:5", "vsock:x", "virtio-serial:no.such.port"} {
		if l, err := Listen(ctx, bad); err == nil {
			_ = l.Close()
			t.Errorf("Listen(%q) succeeded, want an error", bad)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := Listen(ctx, "unix:"+sock)
	if err != nil {
		t.Fatalf("Listen unix: %v", err)
	}
	defer l.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	echo(t, c, acceptWithin(t, l, 5*time.Second))
}

// openPty opens a pty master the way the listener opens a port (non-blocking, so deadlines
// work) and returns it with the name of its slave, which is closed.
func openPty(t *testing.T) (*os.File, string) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pty (try: mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts): %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	var n uint32
	err = control(master, func(fd int) error {
		var err error
		if n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN); err != nil {
			return err
		}
		return unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0)
	})
	if err != nil {
		t.Fatalf("set up pty: %v", err)
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	// A master polls POLLHUP only once its slave was opened and closed again.
	slave, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	_ = slave.Close()
	return master, name
}

// control runs fn on f's descriptor without putting f in blocking mode (as f.Fd would).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// openHostEnd opens the pty slave in raw mode, as the host's end of the port.
func openHostEnd(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open host end: %v", err)
	}
	err = control(f, func(fd int) error { return makeRaw(fd) })
	if err != nil {
		t.Fatalf("make host end raw: %v", err)
	}
	return f
}

// makeRaw does what cfmakeraw(3) does.
func makeRaw(fd int) error {
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
}

func acceptWithin(t *testing.T, l net.Listener, d time.Duration) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		return r.c
	case <-time.After(d):
		t.Fatalf("Accept: nothing within %v", d)
	}
	return nil
}

// echo sends a message each way between a and b.
func echo(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, dir := range []struct{ from, to net.Conn }{{a, b}, {b, a}} {
		msg := []byte("ping \x00\x11\r\n binary-safe")
		if _, err := dir.from.Write(msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		_ = dir.to.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(dir.to, got); err != nil {
			t.Fatalf("read: %v", err)
		}
		if string(got) != string(msg) {
			t.Fatalf("read %q, want %q", got, msg)
		}
	}
}
