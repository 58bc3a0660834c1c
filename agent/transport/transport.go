// Package transport opens the guest side of the channels the host uses to reach the agent: a
// named virtio-serial port carrying a yamux session (one yamux stream per ttrpc connection),
// AF_VSOCK, and, outside a VM, unix sockets. Every listener is a net.Listener, so the ttrpc
// server serves them all the same way.
package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/agent/api"
)

// Where the guest kernel shows its transports.
const (
	virtioPortsDir = "/sys/class/virtio-ports"
	devDir         = "/dev"
	vsockDevice    = "/dev/vsock"
)

// ListenAll opens every guest transport that exists: the virtio-serial port named
// api.AgentPortName and vsock port api.AgentVsockPort when /dev/vsock exists. It returns the listeners
// that opened and, joined, the errors of those that did not; the error is non-nil with
// listeners too, so the caller can log it and serve on what it got. With no transport at all
// it returns no listener and an error saying so.
func ListenAll(ctx context.Context) ([]net.Listener, error) {
	var (
		ls   []net.Listener
		errs []error
	)
	dev, err := FindVirtioPort(virtioPortsDir, devDir, api.AgentPortName)
	switch {
	case err == nil:
		l, err := ListenVirtioSerial(ctx, dev)
		if err != nil {
			errs = append(errs, err)
		} else {
			ls = append(ls, l)
		}
	case !errors.Is(err, os.ErrNotExist):
		errs = append(errs, err)
	}
	if _, err := os.Stat(vsockDevice); err == nil {
		l, err := ListenVsock(api.AgentVsockPort)
		if err != nil {
			errs = append(errs, err)
		} else {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no agent transport: no virtio-serial port named %q and no %s: %w",
			api.AgentPortName, vsockDevice, os.ErrNotExist))
	}
	for _, l := range ls {
		log.G(ctx).WithField("addr", l.Addr().String()).Infof("listening on %s", l.Addr().Network())
	}
	return ls, errors.Join(errs...)
}

// Listen opens one listener named by addr:
//
//	unix:/path            a unix socket (for running the agent outside a VM)
//	vsock:PORT            AF_VSOCK on PORT
//	virtio-serial:NAME    the virtio-serial port named NAME
//	virtio-serial:/dev/X  the virtio-serial device X
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	kind, rest, ok := strings.Cut(addr, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("listen address %q: want unix:PATH, vsock:PORT or virtio-serial:NAME", addr)
	}
	switch kind {
	case "unix":
		_ = os.Remove(rest)
		l, err := net.Listen("unix", rest)
		if err != nil {
			return nil, fmt.Errorf("listen on unix socket %s: %w", rest, err)
		}
		return l, nil
	case "vsock":
		port, err := strconv.ParseUint(rest, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: bad vsock port: %w", addr, err)
		}
		return ListenVsock(uint32(port))
	case "virtio-serial":
		dev := rest
		if !strings.HasPrefix(rest, "/") {
			var err error
			if dev, err = FindVirtioPort(virtioPortsDir, devDir, rest); err != nil {
				return nil, err
			}
		}
		return ListenVirtioSerial(ctx, dev)
	}
	return nil, fmt.Errorf("listen address %q: unknown transport %q (want unix, vsock or virtio-serial)", addr, kind)
}
