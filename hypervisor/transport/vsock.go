package transport

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/mdlayher/vsock"
)

// DialVsock connects to port on the guest with context id cid over AF_VSOCK, retrying
// until ctx ends.
func DialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	name := fmt.Sprintf("vsock %d:%d", cid, port)
	return retry(ctx, name, func(ctx context.Context) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() { // vsock.Dial takes no context: abandon it (and close its conn) if ctx ends
			c, err := vsock.Dial(cid, port, nil)
			ch <- result{c, err}
		}()
		select {
		case r := <-ch:
			return r.c, r.err
		case <-ctx.Done():
			go func() {
				if r := <-ch; r.c != nil {
					_ = r.c.Close()
				}
			}()
			return nil, ctx.Err()
		}
	})
}

// DialHybridVsock connects to port in the guest through a hybrid vsock unix socket (Cloud
// Hypervisor, Firecracker): it sends "CONNECT <port>\n" and expects "OK <hostport>\n" before
// the connection carries the agent's traffic. It retries until ctx ends.
func DialHybridVsock(ctx context.Context, path string, port uint32) (net.Conn, error) {
	name := fmt.Sprintf("hybrid vsock %s port %d", path, port)
	return retry(ctx, name, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, err
		}
		if err := hybridHandshake(ctx, c, port); err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	})
}

// hybridHandshake runs the CONNECT/OK exchange. It reads the reply one byte at a time so
// that nothing after the newline is consumed.
func hybridHandshake(ctx context.Context, c net.Conn, port uint32) error {
	stop := closeOnCancel(ctx, c)
	defer stop()
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return fmt.Errorf("send CONNECT: %w", err)
	}
	var line []byte
	b := make([]byte, 1)
	for len(line) < maxReplyLen && (len(line) == 0 || line[len(line)-1] != '\n') {
		if _, err := io.ReadFull(c, b); err != nil {
			return fmt.Errorf("read CONNECT reply (got %q): %w", line, err)
		}
		line = append(line, b[0])
	}
	if !strings.HasPrefix(string(line), "OK ") || line[len(line)-1] != '\n' {
		return fmt.Errorf("CONNECT %d refused: %q", port, line)
	}
	return nil
}

// maxReplyLen bounds the "OK <port>\n" reply.
const maxReplyLen = 32
