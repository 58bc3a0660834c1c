package portfwd

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// echoServer serves on a loopback port: it writes back each line it reads, prefixed with
// "echo ", and closes when its peer closes.
func echoServer(t *testing.T) uint32 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if line != "" {
						_, _ = c.Write([]byte("echo " + line))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

func readAll(t *testing.T, tb *Table, id string) (string, bool) {
	t.Helper()
	var out []byte
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		data, eof, err := tb.Read(ctx, id, 0)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data...)
		if eof {
			return string(out), true
		}
		if len(data) == 0 && len(out) > 0 {
			return string(out), false
		}
	}
	return string(out), false
}

func TestForward(t *testing.T) {
	port := echoServer(t)
	tb := &Table{}
	ctx := context.Background()
	id, err := tb.Open(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tb.Write(ctx, id, []byte("hello\n"), false); err != nil || n != 6 {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if out, _ := readAll(t, tb, id); out != "echo hello\n" {
		t.Fatalf("read %q", out)
	}
	// The host's side is done: the guest's server sees EOF, answers and closes.
	if _, err := tb.Write(ctx, id, []byte("bye\n"), true); err != nil {
		t.Fatal(err)
	}
	if out, eof := readAll(t, tb, id); out != "echo bye\n" || !eof {
		t.Fatalf("read %q, eof %v", out, eof)
	}
	if err := tb.Close(id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.Read(ctx, id, 0); !errdefs.IsNotFound(err) {
		t.Fatalf("Read after Close: %v", err)
	}
}

// A read with nothing to read returns empty, not eof, by its deadline.
func TestReadPolls(t *testing.T) {
	port := echoServer(t)
	tb := &Table{}
	id, err := tb.Open(context.Background(), port)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.CloseAll()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	data, eof, err := tb.Read(ctx, id, 0)
	if err != nil || eof || len(data) != 0 || time.Since(start) > 5*time.Second {
		t.Fatalf("Read: %q eof %v err %v after %v", data, eof, err, time.Since(start))
	}
}

func TestOpenRefused(t *testing.T) {
	tb := &Table{}
	for _, p := range []uint32{0, 65536, 70000} {
		if _, err := tb.Open(context.Background(), p); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Open(%d): %v, want InvalidArgument", p, err)
		}
	}
	l, _ := net.Listen("tcp4", "127.0.0.1:0")
	free := uint32(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	if _, err := tb.Open(context.Background(), free); !errdefs.IsUnavailable(err) {
		t.Errorf("Open of a port nobody listens on: %v, want Unavailable", err)
	}
	if tb.Len() != 0 {
		t.Errorf("%d connections left", tb.Len())
	}
}

// The table is bounded; idle connections make room, busy ones do not.
func TestBounded(t *testing.T) {
	port := echoServer(t)
	tb := &Table{}
	defer tb.CloseAll()
	ctx := context.Background()
	var ids []string
	for i := 0; i < MaxConns; i++ {
		id, err := tb.Open(ctx, port)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		ids = append(ids, id)
	}
	if _, err := tb.Open(ctx, port); !errdefs.IsResourceExhausted(err) {
		t.Fatalf("connection %d: %v, want ResourceExhausted", MaxConns+1, err)
	}
	tb.mu.Lock()
	tb.conns[ids[3]].used.Store(time.Now().Add(-2 * IdleTimeout).UnixNano())
	tb.mu.Unlock()
	id, err := tb.Open(ctx, port)
	if err != nil {
		t.Fatalf("with an idle connection to drop: %v", err)
	}
	if _, err := tb.Write(ctx, ids[3], []byte("x"), false); !errdefs.IsNotFound(err) {
		t.Fatalf("the idle connection is still there: %v", err)
	}
	if id == ids[3] || tb.Len() != MaxConns {
		t.Fatalf("id %s, %d open", id, tb.Len())
	}
}
