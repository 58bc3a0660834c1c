package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/log"
	"google.golang.org/grpc"

	"github.com/veil-runtime/veil/snapshotter/snapconfig"
)

// DefaultAddress is the unix socket veil-snapshotter serves on (snapconfig.DefaultAddress).
const DefaultAddress = snapconfig.DefaultAddress

// Listen makes the socket at address (its directory 0700, the socket 0600: containerd runs as
// root). A socket left by a previous run is replaced; any other file there is an error.
func Listen(address string) (net.Listener, error) {
	if !filepath.IsAbs(address) {
		return nil, fmt.Errorf("snapshotter: socket %q is not an absolute path", address)
	}
	if err := os.MkdirAll(filepath.Dir(address), 0o700); err != nil {
		return nil, fmt.Errorf("snapshotter: socket directory: %w", err)
	}
	if fi, err := os.Lstat(address); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("snapshotter: %s exists and is not a socket", address)
		}
		if c, err := net.Dial("unix", address); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("snapshotter: %s is in use by another process", address)
		}
		if err := os.Remove(address); err != nil {
			return nil, fmt.Errorf("snapshotter: stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return nil, fmt.Errorf("snapshotter: %w", err)
	}
	if err := os.Chmod(address, 0o600); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("snapshotter: %w", err)
	}
	return l, nil
}

// Serve serves sn's snapshots API (containerd's proxy plugin protocol) on l until ctx is
// done, then stops gracefully and removes a unix socket's file.
func Serve(ctx context.Context, l net.Listener, sn snapshots.Snapshotter) error {
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.GracefulStop()
		case <-done:
		}
	}()
	log.G(ctx).WithField("address", l.Addr().String()).Info("veil-snapshotter serving")
	err := srv.Serve(l)
	close(done)
	if ua, ok := l.Addr().(*net.UnixAddr); ok {
		_ = os.Remove(ua.Name)
	}
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("snapshotter: serve: %w", err)
	}
	return nil
}
