// Command veil-snapshotter is the containerd snapshotter that keeps a guest-pull pod's image
// layers off the host: containerd uses it as the proxy plugin [proxy_plugins.veil] (type
// snapshot), selected per runtime handler (snapshotter = "veil"). See docs/snapshotter.md and
// package snapshotter.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/snapshotter"
	"github.com/veil-runtime/veil/snapshotter/snapconfig"
)

func main() {
	root := flag.String("root", snapshotter.DefaultRoot, "directory of the snapshots and their metadata")
	address := flag.String("address", snapshotter.DefaultAddress, "unix socket to serve containerd's snapshots API on")
	level := flag.String("log-level", "info", "log level: debug, info, warn, error")
	printConfig := flag.String("print-containerd-config", "", "print the containerd 2.x configuration that uses the snapshotter at -address, "+
		"next to the given default snapshotter (e.g. overlayfs), and exit")
	printUnit := flag.String("print-systemd-unit", "", "print a systemd unit running the veil-snapshotter binary at this path, and exit")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "veil-snapshotter: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	switch {
	case *printConfig != "":
		fmt.Print(snapconfig.ContainerdConfig(*address, *printConfig))
		return
	case *printUnit != "":
		fmt.Print(snapconfig.Unit(*printUnit))
		return
	}
	if err := log.SetLevel(*level); err != nil {
		fmt.Fprintf(os.Stderr, "veil-snapshotter: -log-level: %v\n", err)
		os.Exit(2)
	}
	if err := run(*root, *address); err != nil {
		fmt.Fprintf(os.Stderr, "veil-snapshotter: %v\n", err)
		os.Exit(1)
	}
}

func run(root, address string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sn, err := snapshotter.New(root)
	if err != nil {
		return err
	}
	defer sn.Close()
	l, err := snapshotter.Listen(address)
	if err != nil {
		return err
	}
	return snapshotter.Serve(ctx, l, sn)
}
