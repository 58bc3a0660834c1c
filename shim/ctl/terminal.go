package ctl

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/console"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/stdio"
)

// rawTerminal puts the local terminal (when stdin is one) into raw mode, sends its size to the
// guest and keeps it in step on SIGWINCH. The returned function restores the terminal.
func rawTerminal(ctx context.Context, p stdio.Process) func() {
	con, err := console.ConsoleFromFile(os.Stdin)
	if err != nil {
		return func() {}
	}
	resize := func() {
		if sz, err := con.Size(); err == nil {
			_, _ = p.Agent.TtyWinResize(ctx, &api.TtyWinResizeRequest{
				ContainerId: p.ContainerID, ExecId: p.ExecID, Rows: uint32(sz.Height), Cols: uint32(sz.Width),
			})
		}
	}
	if err := con.SetRaw(); err != nil {
		return func() {}
	}
	resize()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				resize()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
		_ = con.Reset()
	}
}
