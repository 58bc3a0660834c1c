// Package portfwd is the guest's side of port forwarding (kubectl port-forward): TCP
// connections from the agent to ports on the guest's loopback, which the host drives one
// request at a time through the agent API (OpenPort, WritePort, ReadPort, ClosePort), so that
// every step passes the policy like any other request. The guest's loopback is the pod's: the
// containers share the guest's network.
//
// The table is bounded (MaxConns) and forgets connections idle for IdleTimeout, so a host that
// opens connections and never closes them cannot exhaust the agent.
package portfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
)

const (
	// MaxConns bounds the open connections.
	MaxConns = 64
	// MaxRead is the most one ReadPort returns.
	MaxRead = 64 << 10
	// PollWait bounds how long a ReadPort waits for data.
	PollWait = 10 * time.Second
	// IdleTimeout is how long a connection may go unused before the table closes it.
	IdleTimeout = 10 * time.Minute
	// writeTimeout bounds one WritePort: a guest server that stops reading does not hold the
	// host's request forever.
	writeTimeout = 30 * time.Second
	dialTimeout  = 5 * time.Second
)

// Table holds the open connections. Its methods are safe for concurrent use.
type Table struct {
	// Dial connects to an address; nil means net.Dialer's (tests replace it).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu    sync.Mutex
	conns map[string]*conn
	next  uint64
}

// conn is one forwarded connection.
type conn struct {
	c      net.Conn
	readMu sync.Mutex   // one ReadPort at a time
	used   atomic.Int64 // unix nanoseconds of the last use
}

func (c *conn) touch() { c.used.Store(time.Now().UnixNano()) }

func (c *conn) idle(now time.Time) bool {
	return now.Sub(time.Unix(0, c.used.Load())) > IdleTimeout
}

// Open connects to port on the guest's loopback (127.0.0.1, then ::1) and returns the
// connection's id.
func (t *Table) Open(ctx context.Context, port uint32) (string, error) {
	if port == 0 || port > 65535 {
		return "", fmt.Errorf("port %d is not a TCP port (1-65535): %w", port, errdefs.ErrInvalidArgument)
	}
	if err := t.makeRoom(); err != nil {
		return "", err
	}
	c, err := t.dial(ctx, port)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.conns) >= MaxConns {
		c.Close()
		return "", fmt.Errorf("%d port connections are open: %w", MaxConns, errdefs.ErrResourceExhausted)
	}
	if t.conns == nil {
		t.conns = map[string]*conn{}
	}
	t.next++
	id := "port-" + strconv.FormatUint(t.next, 10)
	pc := &conn{c: c}
	pc.touch()
	t.conns[id] = pc
	return id, nil
}

func (t *Table) dial(ctx context.Context, port uint32) (net.Conn, error) {
	dial := t.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: dialTimeout}
		dial = d.DialContext
	}
	p := strconv.Itoa(int(port))
	c, err := dial(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return c, nil
	}
	c, err6 := dial(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, nil
	}
	return nil, fmt.Errorf("nothing accepts connections on port %d in the guest (127.0.0.1: %v; ::1: %v): %w",
		port, err, err6, errdefs.ErrUnavailable)
}

// makeRoom closes idle connections when the table is full.
func (t *Table) makeRoom() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.conns) < MaxConns {
		return nil
	}
	now := time.Now()
	for id, c := range t.conns {
		if c.idle(now) {
			c.c.Close()
			delete(t.conns, id)
		}
	}
	if len(t.conns) >= MaxConns {
		return fmt.Errorf("%d port connections are open, none idle: %w", MaxConns, errdefs.ErrResourceExhausted)
	}
	return nil
}

func (t *Table) get(id string) (*conn, error) {
	t.mu.Lock()
	c, ok := t.conns[id]
	t.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("port connection %q: %w", id, errdefs.ErrNotFound)
	}
	c.touch()
	return c, nil
}

// Write writes all of data to connection id, then closes its writing side when closeWrite.
func (t *Table) Write(ctx context.Context, id string, data []byte, closeWrite bool) (int, error) {
	c, err := t.get(id)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(writeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.c.SetWriteDeadline(deadline)
	n, err := c.c.Write(data)
	if err != nil {
		return n, fmt.Errorf("port connection %s: write: %w", id, err)
	}
	if closeWrite {
		if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil {
				return n, fmt.Errorf("port connection %s: close write: %w", id, err)
			}
		}
	}
	return n, nil
}

// Read returns what connection id has to read, at most max bytes (MaxRead when 0 or more),
// waiting up to PollWait (or ctx's deadline) for some; eof reports that the guest's side
// closed. No data and no eof means: ask again.
func (t *Table) Read(ctx context.Context, id string, max int) (data []byte, eof bool, err error) {
	c, err := t.get(id)
	if err != nil {
		return nil, false, err
	}
	if max <= 0 || max > MaxRead {
		max = MaxRead
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	deadline := time.Now().Add(PollWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.c.SetReadDeadline(deadline)
	buf := make([]byte, max)
	n, err := c.c.Read(buf)
	c.touch()
	switch {
	case errors.Is(err, io.EOF):
		return buf[:n], true, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return buf[:n], false, nil
	case err != nil:
		return buf[:n], true, nil // reset or closed: the guest's side is gone
	}
	return buf[:n], false, nil
}

// Close closes connection id and forgets it.
func (t *Table) Close(id string) error {
	t.mu.Lock()
	c, ok := t.conns[id]
	delete(t.conns, id)
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("port connection %q: %w", id, errdefs.ErrNotFound)
	}
	return c.c.Close()
}

// CloseAll closes every connection (DestroySandbox).
func (t *Table) CloseAll() {
	t.mu.Lock()
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	for _, c := range conns {
		c.c.Close()
	}
}

// Len is the number of open connections.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}
