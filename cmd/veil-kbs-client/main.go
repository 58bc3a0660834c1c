// Command veil-kbs-client speaks the KBS protocol from the command line: it attests with a TEE
// (snp, tdx, or sim with a sim authority) and prints the token's claims or a resource, and it
// runs the administrator's commands. See docs/kbs.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/veil-runtime/veil/kbs-client/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	status := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(status)
}
