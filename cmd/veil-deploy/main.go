// Command veil-deploy is the Veil node installer, the program of the installer DaemonSet's
// image: it checks the node, installs the runtime under /opt/veil, declares its handlers to
// containerd and labels the node; `veil-deploy check` is the host capability report. See
// docs/kubernetes.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/veil-runtime/veil/deploy/installer/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	status := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(status)
}
