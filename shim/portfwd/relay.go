package portfwd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// chunk is the most one WritePort or ReadPort carries.
const chunk = 32 << 10

// soOriginalDst is netfilter's SO_ORIGINAL_DST (linux/netfilter_ipv4.h).
const soOriginalDst = 80

// forward carries c to the port it was made for on the guest's loopback.
func (f *Forwarder) forward(ctx context.Context, c *net.TCPConn) error {
	port, err := originalPort(c)
	if err != nil {
		return err
	}
	resp, err := f.agent.OpenPort(ctx, &api.OpenPortRequest{Port: uint32(port)})
	if err != nil {
		return fmt.Errorf("port %d: %s", port, statusMessage(err))
	}
	id := resp.GetConnId()
	done := make(chan error, 2)
	go func() { done <- f.up(ctx, c, id) }()
	go func() { done <- f.down(ctx, c, id) }()
	first := <-done
	var cerr error
	if first != nil { // end the other direction at once: both ends closed
		cerr = f.closePort(ctx, id)
		c.Close()
	}
	second := <-done // a clean end of one direction waits for the other
	if first == nil {
		cerr = f.closePort(ctx, id)
	}
	c.Close()
	if err := errors.Join(first, second); err != nil {
		return fmt.Errorf("port %d: %w", port, err)
	}
	if cerr != nil {
		return fmt.Errorf("port %d: close: %w", port, cerr)
	}
	return nil
}

// closePort closes the guest's side of connection id.
func (f *Forwarder) closePort(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := f.agent.ClosePort(ctx, &api.ClosePortRequest{ConnId: id}); err != nil {
		return errors.New(statusMessage(err))
	}
	return nil
}

// up copies what the host's client sends into the guest; at its end it closes the guest
// connection's writing side.
func (f *Forwarder) up(ctx context.Context, c *net.TCPConn, id string) error {
	buf := make([]byte, chunk)
	for {
		n, rerr := c.Read(buf)
		eof := rerr != nil
		if n > 0 || eof {
			_, err := f.agent.WritePort(ctx, &api.WritePortRequest{ConnId: id, Data: buf[:n], CloseWrite: eof})
			if err != nil {
				return fmt.Errorf("write to the guest: %s", statusMessage(err))
			}
		}
		if eof {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, net.ErrClosed) {
				return nil
			}
			return rerr
		}
	}
}

// down copies what the guest's server sends to the host's client; at its end it closes the
// client connection's writing side.
func (f *Forwarder) down(ctx context.Context, c *net.TCPConn, id string) error {
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r, err := f.agent.ReadPort(ctx, &api.ReadPortRequest{ConnId: id, Len: chunk})
		if err != nil {
			return fmt.Errorf("read from the guest: %s", statusMessage(err))
		}
		if len(r.GetData()) > 0 {
			if _, err := c.Write(r.GetData()); err != nil {
				return err
			}
		}
		if r.GetEof() {
			_ = c.CloseWrite()
			return nil
		}
	}
}

// originalPort is the port c was made for before the redirect (its own local port when it
// was made to the listener directly).
func originalPort(c *net.TCPConn) (uint16, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var port uint16
	var serr error
	err = raw.Control(func(fd uintptr) {
		// struct sockaddr_in: family (2 bytes), port (2, big endian), address (4).
		mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, soOriginalDst)
		if err != nil {
			serr = err
			return
		}
		port = binary.BigEndian.Uint16(mreq.Multiaddr[2:4])
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("the port a connection was made for (SO_ORIGINAL_DST): %w", err)
	}
	return port, nil
}
