package transport

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/containerd/log"
	"github.com/hashicorp/yamux"
)

// ErrClosed is returned by VirtioSerial.DialAgent after Close.
var ErrClosed = errors.New("transport: closed")

// VirtioSerial reaches the agent through the unix socket of a QEMU chardev that backs a
// virtserialport. A virtio-serial port is a single byte stream, so one yamux client session
// runs over it (the agent runs the server side) and every DialAgent opens a new yamux stream.
// The session is shared, and re-created when it has died (the guest restarted its side, the
// keep-alive failed, ...). A VirtioSerial is safe for concurrent use.
type VirtioSerial struct {
	path string
	lock chan struct{} // a mutex that a waiting caller can abandon when its ctx ends
	sess *yamux.Session
	done bool
}

// NewVirtioSerial returns a dialer for the chardev socket at path. It connects lazily.
func NewVirtioSerial(path string) *VirtioSerial {
	return &VirtioSerial{path: path, lock: make(chan struct{}, 1)}
}

// DialAgent opens a new stream to the agent. The first call (and the first after the
// session died) connects to the socket and waits until the guest's yamux server answers a
// ping, so a returned stream means the agent's side is up. It retries until ctx ends.
func (v *VirtioSerial) DialAgent(ctx context.Context) (net.Conn, error) {
	name := "virtio-serial " + v.path
	return retry(ctx, name, func(ctx context.Context) (net.Conn, error) {
		sess, err := v.session(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := sess.Open()
		if err != nil {
			return nil, fmt.Errorf("open yamux stream: %w", err)
		}
		return conn, nil
	})
}

// Close ends the session (and so every stream on it). Later DialAgent calls fail.
func (v *VirtioSerial) Close() error {
	v.lock <- struct{}{}
	defer func() { <-v.lock }()
	v.done = true
	if v.sess == nil {
		return nil
	}
	err := v.sess.Close()
	v.sess = nil
	if err != nil {
		return fmt.Errorf("virtio-serial %s: close yamux session: %w", v.path, err)
	}
	return nil
}

// session returns the live session, making a new one when there is none.
func (v *VirtioSerial) session(ctx context.Context) (*yamux.Session, error) {
	select {
	case v.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-v.lock }()
	if v.done {
		return nil, ErrClosed
	}
	if v.sess != nil && !v.sess.IsClosed() {
		return v.sess, nil
	}
	sess, err := v.connect(ctx)
	if err != nil {
		return nil, err
	}
	v.sess = sess
	return sess, nil
}

// connect dials the socket, starts a yamux client and waits for the first ping reply.
func (v *VirtioSerial) connect(ctx context.Context) (*yamux.Session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", v.path)
	if err != nil {
		return nil, err
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = nil
	cfg.Logger = log.G(ctx).WithField("agent-socket", v.path)
	sess, err := yamux.Client(conn, cfg)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("start yamux client: %w", err)
	}
	if err := awaitPing(ctx, sess); err != nil {
		_ = sess.Close()
		return nil, err
	}
	return sess, nil
}

// awaitPing pings until the peer answers, the session dies or ctx ends. Pings sent before
// the guest opened its port wait in the socket and are answered once it does.
func awaitPing(ctx context.Context, sess *yamux.Session) error {
	stop := context.AfterFunc(ctx, func() { _ = sess.Close() })
	defer stop()
	for {
		_, err := sess.Ping()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, yamux.ErrTimeout):
			return fmt.Errorf("yamux ping: %w", err)
		}
	}
}
