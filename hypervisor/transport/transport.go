// Package transport is the host side of the agent's transports: it dials the agent in the
// guest over virtio-serial (a yamux session on the QEMU chardev's unix socket), vsock, or
// Cloud Hypervisor's hybrid vsock. Every dialer retries with a short backoff until its
// context ends and then names the transport and the last failure.
package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Backoff bounds between attempts.
const (
	firstBackoff = 10 * time.Millisecond
	maxBackoff   = 200 * time.Millisecond
)

// retry calls attempt until it succeeds, fails for good (ErrClosed) or ctx ends.
func retry[T any](ctx context.Context, transport string, attempt func(context.Context) (T, error)) (T, error) {
	wait := firstBackoff
	for {
		v, err := attempt(ctx)
		if err == nil {
			return v, nil
		}
		if errors.Is(err, ErrClosed) { // retrying cannot help
			return v, fmt.Errorf("%s: %w", transport, err)
		}
		select {
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("%s: agent not reachable: %w (last error: %w)", transport, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
	}
}

// closeOnCancel closes c if ctx ends before the returned stop function is called; it bounds
// blocking reads and writes during a handshake.
func closeOnCancel(ctx context.Context, c net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.Close() })
}
