package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "veil-tr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "agent.sock")
}

// echo copies a stream back to itself.
func echo(c net.Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}

// roundTrip writes msg on c and expects it back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("read %q, %v; want %q", buf, err, msg)
	}
}

// yamuxPeer plays the guest: it accepts connections on path after delay and serves a yamux
// server session on each, echoing every stream. It counts sessions.
type yamuxPeer struct {
	ln       net.Listener
	sessions atomic.Int32
	last     atomic.Pointer[yamux.Session]
}

func newYamuxPeer(t *testing.T, path string, delay time.Duration) *yamuxPeer {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	p := &yamuxPeer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			time.Sleep(delay) // the guest has not opened its port yet
			sess, err := yamux.Server(conn, nil)
			if err != nil {
				return
			}
			p.sessions.Add(1)
			p.last.Store(sess)
			go func() {
				for {
					s, err := sess.Accept()
					if err != nil {
						return
					}
					go echo(s)
				}
			}()
		}
	}()
	return p
}

func TestVirtioSerial(t *testing.T) {
	path := socketPath(t)
	peer := newYamuxPeer(t, path, 200*time.Millisecond)
	d := NewVirtioSerial(path)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	a, err := d.DialAgent(ctx)
	if err != nil {
		t.Fatalf("DialAgent: %v", err)
	}
	b, err := d.DialAgent(ctx)
	if err != nil {
		t.Fatalf("second DialAgent: %v", err)
	}
	roundTrip(t, a, "hello a")
	roundTrip(t, b, "hello b")
	if n := peer.sessions.Load(); n != 1 {
		t.Errorf("%d sessions for two streams, want 1 shared", n)
	}

	// The guest side restarts: the next dial makes a new session.
	peer.last.Load().Close()
	time.Sleep(50 * time.Millisecond)
	c, err := d.DialAgent(ctx)
	if err != nil {
		t.Fatalf("DialAgent after the session died: %v", err)
	}
	roundTrip(t, c, "hello c")
	if n := peer.sessions.Load(); n != 2 {
		t.Errorf("%d sessions, want a second one", n)
	}

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	start := time.Now()
	if _, err := d.DialAgent(ctx); !errors.Is(err, ErrClosed) || time.Since(start) > time.Second {
		t.Errorf("DialAgent after Close = %v after %s, want ErrClosed at once", err, time.Since(start))
	}
}

func TestVirtioSerialUnreachable(t *testing.T) {
	path := socketPath(t)
	// A socket whose peer never speaks yamux: the ping is never answered.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, p := range []string{path, path + ".missing"} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		_, err := NewVirtioSerial(p).DialAgent(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "virtio-serial "+p) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("DialAgent(%s) = %v, want a deadline error naming the transport", p, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("DialAgent(%s) took %s with a 300ms deadline", p, d)
		}
	}
}

// hybridPeer answers CONNECT like Cloud Hypervisor, then echoes. It refuses other ports.
func hybridPeer(t *testing.T, path string, port string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				line := make([]byte, 0, 32)
				b := make([]byte, 1)
				for len(line) == 0 || line[len(line)-1] != '\n' {
					if _, err := c.Read(b); err != nil {
						c.Close()
						return
					}
					line = append(line, b[0])
				}
				if string(line) != "CONNECT "+port+"\n" {
					c.Close()
					return
				}
				// The reply and the first payload bytes arrive together.
				_, _ = c.Write([]byte("OK 1073741824\nwelcome"))
				echo(c)
			}()
		}
	}()
}

func TestHybridVsock(t *testing.T) {
	path := socketPath(t)
	hybridPeer(t, path, "1024")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialHybridVsock(ctx, path, 1024)
	if err != nil {
		t.Fatalf("DialHybridVsock: %v", err)
	}
	defer c.Close()
	buf := make([]byte, len("welcome"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "welcome" {
		t.Fatalf("first bytes %q, %v: the handshake consumed payload", buf, err)
	}
	roundTrip(t, c, "ping")

	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	_, err = DialHybridVsock(ctx2, path, 2048)
	if err == nil || !strings.Contains(err.Error(), "hybrid vsock "+path+" port 2048") {
		t.Errorf("DialHybridVsock to a refused port = %v", err)
	}
}

func TestVsockUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := DialVsock(ctx, 3, 1024)
	if err == nil || !strings.Contains(err.Error(), "vsock 3:1024") {
		t.Fatalf("DialVsock = %v, want an error naming the transport", err)
	}
}
