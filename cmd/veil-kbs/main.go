// Command veil-kbs is Veil's Key Broker Service: `veil-kbs --listen 127.0.0.1:8080 --data DIR`
// sets up DIR on first start (keys, resource store, default policies) and serves the KBS
// protocol 0.4.0. See docs/kbs.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/veil-runtime/veil/attestation/kbs/daemon"
)

func main() {
	cfg, err := daemon.ParseFlags("veil-kbs", os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "veil-kbs:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "veil-kbs:", err)
		os.Exit(1)
	}
}
