// Package qmp is a client for the QEMU Machine Protocol: it connects to QEMU's QMP unix
// socket, negotiates capabilities, runs commands (matched to their replies by id, so many
// goroutines may call Execute at once) and delivers asynchronous events.
//
// It knows nothing about a particular VM: typed helpers cover the few commands the drivers
// use (query-status, system_powerdown, quit); anything else goes through Execute.
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// ErrClosed is returned by Execute once the connection is gone (closed by Close, or by QEMU).
var ErrClosed = errors.New("qmp: connection closed")

// Error is an error reply from QEMU ({"error": {"class": ..., "desc": ...}}).
type Error struct {
	Command string
	Class   string
	Desc    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp: %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Event is an asynchronous QMP event, such as SHUTDOWN or STOP.
type Event struct {
	Name      string
	Data      json.RawMessage // the event's "data" member, if any
	Timestamp time.Time
}

// Version is QEMU's version as announced in the QMP greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

// Option configures a Client.
type Option func(*Client)

// WithEventHandler has h called, from the client's reader goroutine, for every event. h must
// not block for long and must not call Execute (the reply would wait behind h).
func WithEventHandler(h func(Event)) Option {
	return func(c *Client) { c.handler = h }
}

// Client is one QMP connection. It is safe for concurrent use.
type Client struct {
	conn     net.Conn
	handler  func(Event)
	eventBuf int
	events   chan Event
	version  Version

	writeMu sync.Mutex // serialises writes of whole commands
	mu      sync.Mutex // guards nextID, pending, err
	nextID  uint64
	pending map[string]chan reply
	err     error // why the connection ended; set once
	done    chan struct{}
}

// reply is one command's answer: Return or Error is set.
type reply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

func (r reply) result(command string) (json.RawMessage, error) {
	if r.Error != nil {
		return nil, &Error{Command: command, Class: r.Error.Class, Desc: r.Error.Desc}
	}
	return r.Return, nil
}

// message is anything QEMU sends: a greeting, a reply or an event.
type message struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
	} `json:"QMP"`
	ID        json.RawMessage `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	reply
}

// Dial connects to the QMP socket at path, retrying while the socket does not exist yet or
// refuses connections, until ctx ends. It reads the greeting and enters command mode.
func Dial(ctx context.Context, path string, opts ...Option) (*Client, error) {
	var d net.Dialer
	var lastErr error
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return New(ctx, conn, opts...)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect to %s: %w (last error: %w)", path, ctx.Err(), lastErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// New runs the QMP handshake on an established connection and takes ownership of it.
func New(ctx context.Context, conn net.Conn, opts ...Option) (*Client, error) {
	c := &Client{conn: conn, eventBuf: 64, pending: map[string]chan reply{}, done: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	c.events = make(chan Event, c.eventBuf)
	if err := c.handshake(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// handshake reads the greeting, starts the reader and sends qmp_capabilities.
func (c *Client) handshake(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetReadDeadline(dl)
	}
	r := bufio.NewReader(c.conn)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("qmp: read greeting: %w", err)
	}
	var greeting message
	if err := json.Unmarshal(line, &greeting); err != nil || greeting.QMP == nil {
		return fmt.Errorf("qmp: not a QMP greeting: %q", line)
	}
	v := greeting.QMP.Version
	c.version = Version{Major: v.QEMU.Major, Minor: v.QEMU.Minor, Micro: v.QEMU.Micro, Package: v.Package}
	_ = c.conn.SetReadDeadline(time.Time{})
	go c.readLoop(r)
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		return fmt.Errorf("qmp: negotiate capabilities: %w", err)
	}
	return nil
}

// Version is the QEMU version from the greeting.
func (c *Client) Version() Version { return c.version }

// Events delivers events as they arrive; it is closed when the connection ends. When nobody
// reads it and its buffer is full, further events are dropped from it (the handler set with
// WithEventHandler still sees them).
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (ErrClosed after Close), or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection. Pending and later Execute calls fail with ErrClosed.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	err := c.conn.Close()
	<-c.done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("qmp: close: %w", err)
	}
	return nil
}

// Execute runs command with args (nil, or anything that marshals to a JSON object) and
// returns the reply's "return" member. A QMP error reply is returned as *Error.
func (c *Client) Execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	id, ch, err := c.register()
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: %w", command, err)
	}
	defer c.unregister(id)
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp: %s: encode arguments: %w", command, err)
	}
	if err := c.write(ctx, append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp: %s: send: %w", command, err)
	}
	select {
	case rep := <-ch:
		return rep.result(command)
	case <-c.done:
		select {
		case rep := <-ch: // the reply raced with the end of the connection
			return rep.result(command)
		default:
		}
		return nil, fmt.Errorf("qmp: %s: %w", command, c.Err())
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp: %s: %w", command, ctx.Err())
	}
}

func (c *Client) register() (string, chan reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return "", nil, c.err
	}
	c.nextID++
	id := strconv.FormatUint(c.nextID, 10)
	ch := make(chan reply, 1)
	c.pending[id] = ch
	return id, ch, nil
}

func (c *Client) unregister(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *Client) write(ctx context.Context, b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	dl, _ := ctx.Deadline()
	_ = c.conn.SetWriteDeadline(dl)
	_, err := c.conn.Write(b)
	return err
}

// readLoop dispatches replies and events until the connection ends.
func (c *Client) readLoop(r *bufio.Reader) {
	defer close(c.done)
	defer close(c.events)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			c.fail(fmt.Errorf("%w: %w", ErrClosed, err))
			return
		}
		var m message
		if err := json.Unmarshal(line, &m); err != nil {
			c.fail(fmt.Errorf("qmp: malformed message %q: %w", line, err))
			_ = c.conn.Close()
			return
		}
		c.dispatch(m)
	}
}

func (c *Client) dispatch(m message) {
	if m.Event != "" {
		c.deliver(m)
		return
	}
	var id string
	if err := json.Unmarshal(m.ID, &id); err != nil {
		return // a reply we did not ask for (no id, or not ours): nobody waits for it
	}
	c.mu.Lock()
	ch := c.pending[id]
	c.mu.Unlock()
	if ch != nil {
		ch <- m.reply
	}
}

func (c *Client) deliver(m message) {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		ev.Timestamp = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
	}
	if c.handler != nil {
		c.handler(ev)
	}
	select {
	case c.events <- ev:
	default:
	}
}

// fail records the first reason the connection ended.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}
