// Command veil-ociimage builds a reproducible linux/amd64 OCI image from files on disk, as an
// OCI layout and an OCI archive, without Docker: `make images` builds the veil-kbs and
// veil-installer images with it. See deploy/ociimage and docs/images.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/veil-runtime/veil/deploy/ociimage"
)

func main() {
	err := ociimage.Command(os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "veil-ociimage:", err)
		os.Exit(1)
	}
}
