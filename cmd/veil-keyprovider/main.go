// Command veil-keyprovider is an ocicrypt key provider that wraps image layer keys under
// key-encryption keys held by veil-kbs (kbs-client/keyprovider, docs/keyprovider.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/veil-runtime/veil/kbs-client/keyprovider"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	status := keyprovider.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(status)
}
