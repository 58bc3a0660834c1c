package transport

import (
	"fmt"
	"net"

	"github.com/mdlayher/vsock"
)

var _ net.Listener = (*vsock.Listener)(nil)

// ListenVsock listens on AF_VSOCK port for connections from any context (the host's CID is 2).
func ListenVsock(port uint32) (net.Listener, error) {
	l, err := vsock.Listen(port, nil)
	if err != nil {
		return nil, fmt.Errorf("listen on vsock port %d: %w", port, err)
	}
	return l, nil
}
