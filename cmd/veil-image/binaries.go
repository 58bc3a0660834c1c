package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	guestimage "github.com/veil-runtime/veil/guest-image"
	"github.com/veil-runtime/veil/guest-image/gobuild"
)

// binaries builds the guest's Go binaries reproducibly (gobuild), with the lock's Go toolchain.
func binaries(args []string) error {
	fs := flag.NewFlagSet("veil-image binaries", flag.ContinueOnError)
	src := fs.String("src", ".", "the git checkout to build from")
	out := fs.String("out", "bin", "output directory")
	lockFile := fs.String("lock", "", "lock file (default: SRC/"+guestimage.LockFile+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := gobuild.ReadSource(ctx, *src)
	if err != nil {
		return err
	}
	if *lockFile == "" {
		*lockFile = s.Dir + "/" + guestimage.LockFile
	}
	l, err := guestimage.ReadLock(*lockFile)
	if err != nil {
		return err
	}
	if err := gobuild.Build(ctx, s, *out, l.Go, os.Stderr); err != nil {
		return err
	}
	note := ""
	if s.Modified {
		note = " (the tree is modified: an image of these binaries cannot be rebuilt by veil-image verify)"
	}
	fmt.Printf("binaries: veil-agent and veil-init of %s with %s in %s%s\n", s.Version(), l.Go, *out, note)
	return nil
}
