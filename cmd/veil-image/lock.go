package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	guestimage "github.com/veil-runtime/veil/guest-image"
)

// lock prints the lock file or, with --update, moves it to the archive's current packages.
func lock(args []string) error {
	fs := flag.NewFlagSet("veil-image lock", flag.ContinueOnError)
	file := fs.String("lock", guestimage.LockFile, "the lock file")
	update := fs.Bool("update", false, "resolve the newest kernel (and mkfs) in the archive's signed indexes and write the lock file")
	u := guestimage.LockUpdate{Progress: os.Stderr}
	fs.StringVar(&u.CacheDir, "cache", guestimage.DefaultCacheDir, "cache for the private apt state")
	fs.StringVar(&u.Mirror, "mirror", "", "Debian mirror URI (default: the one the host's apt sources use)")
	fs.StringVar(&u.KernelPackage, "kernel-package", "", "with --update: kernel package NAME[=VERSION] (default: newest 6.12 cloud kernel in "+guestimage.KernelSuite+")")
	fs.StringVar(&u.MkfsVersion, "mkfs-version", "", "with --update: version of "+guestimage.MkfsPackage+" (default: newest in "+guestimage.ToolsSuite+")")
	fs.StringVar(&u.Go, "go", "", "with --update: Go toolchain to lock (default: the lock's, or this veil-image's "+runtime.Version()+" for a new lock)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	old, err := guestimage.ReadLock(*file)
	if !*update {
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(old.Encode())
		return err
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "lock: replacing the unreadable %s: %v\n", *file, err)
	}
	if u.Go == "" {
		u.Go = runtime.Version()
		if old != nil {
			u.Go = old.Go
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := guestimage.UpdateLock(ctx, u)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*file, l.Encode(), 0o644); err != nil {
		return err
	}
	if old != nil && *old == *l {
		fmt.Printf("lock: %s is up to date (kernel %s, mkfs %s, %s)\n", *file, l.Kernel, l.Mkfs, l.Go)
		return nil
	}
	fmt.Printf("lock: wrote %s: kernel %s, mkfs %s, %s; review and commit it\n", *file, l.Kernel, l.Mkfs, l.Go)
	return nil
}
