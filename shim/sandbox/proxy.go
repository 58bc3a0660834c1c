package sandbox

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// ServeProxy accepts connections on l and bridges each one to a new agent connection, so that
// other host processes (veil-ctl exec, ps, kill, call) reach the agent of a VM this process
// owns. It returns when l is closed or ctx ends, after closing every bridged connection.
func (s *Sandbox) ServeProxy(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		local, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.bridge(ctx, local)
		}()
	}
}

func (s *Sandbox) bridge(ctx context.Context, local net.Conn) {
	defer local.Close()
	remote, err := s.DialConn(ctx)
	if err != nil {
		return
	}
	defer remote.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(remote, local)
	go pipe(local, remote)
	select {
	case <-done: // either side closed: tear down both
	case <-ctx.Done():
	}
}
