// Command veil-image builds the guest kernel and initrd of a Veil VM.
//
//	veil-image build --out DIR [--agent PATH] [--init PATH] [--cache DIR] [--lock FILE] [--kernel debian|veil]
//	                 [--modules a,b,c] [--force] [--sim-authority FILE]
//
// It writes DIR/vmlinuz, DIR/initrd.img and DIR/manifest.json and prints
// each step as it goes, with the kernel and mkfs packages of the lock file. See
// docs/guest-image.md.
//
//	veil-image binaries [--src DIR] [--out DIR] [--lock FILE]
//
// builds the guest's Go binaries (veil-agent, veil-init) reproducibly (package
// guest-image/gobuild); `make agent` runs it.
//
//	veil-image lock [--update] [--lock FILE] [--kernel-package NAME[=VERSION]]
//
// prints the lock file, or with --update resolves the archive's current packages and writes it.
//
//	veil-image verify [--src DIR] [--cache DIR] [--sim-authority FILE] IMAGEDIR
//
// rebuilds the image from the commit its manifest names, in a fresh clone, and compares every
// file byte for byte.
//
//	veil-image reference-values [--kernel-params "…"] [--initdata FILE]… [--bindings FILE] IMAGEDIR
//
// prints the reference values a KBS needs for the image (veil-kbs's reference-values.json).
//
//	veil-image sim-authority --out DIR
//
// makes the test chain of the simulated TEE: DIR/sim-authority.pem (private, 0600: what signs
// sim evidence) and the roots a KBS is given to trust it (sim-snp-roots.pem, sim-tdx-root.pem).
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/veil-runtime/veil/attestation/sim"
	guestimage "github.com/veil-runtime/veil/guest-image"
	"github.com/veil-runtime/veil/guest-image/kernel"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "veil-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "sim-authority":
			return simAuthority(args[1:])
		case "binaries":
			return binaries(args[1:])
		case "lock":
			return lock(args[1:])
		case "verify":
			return verify(args[1:])
		case "reference-values":
			return referenceValues(args[1:])
		}
	}
	if len(args) == 0 || args[0] != "build" {
		return errors.New("usage: veil-image build --out DIR [--agent PATH] [flags]; see veil-image build -h\n" +
			"       veil-image binaries [--src DIR] [--out DIR]\n" +
			"       veil-image lock [--update]\n" +
			"       veil-image verify IMAGEDIR\n" +
			"       veil-image reference-values IMAGEDIR\n" +
			"       veil-image sim-authority --out DIR")
	}
	fs := flag.NewFlagSet("veil-image build", flag.ContinueOnError)
	o := guestimage.Options{Progress: os.Stdout}
	fs.StringVar(&o.OutDir, "out", "", "output directory for vmlinuz, initrd.img and manifest.json (required)")
	fs.StringVar(&o.Agent, "agent", "", "static guest agent binary, started by /init (default: veil-agent next to this program, unless --init alone is given)")
	fs.StringVar(&o.Init, "init", "", "static binary to install as /init (default: veil-init next to this program)")
	fs.StringVar(&o.CacheDir, "cache", guestimage.DefaultCacheDir, "cache for apt state, kernel packages and unpacked kernels")
	lockFile := fs.String("lock", "", "lock file pinning the kernel and mkfs packages (default: the "+guestimage.LockFile+" veil-image was built with)")
	kernelKind := fs.String("kernel", string(kernel.Debian), "the kernel: debian (Debian's cloud kernel package) or veil (Veil's own, built from the\n"+
		"locked source package with "+kernel.FragmentFile+"; the first build takes tens of minutes, then it is cached)")
	modules := fs.String("modules", "", "comma-separated kernel modules to load at boot (dependencies are added)\n"+
		"(default for --kernel debian: "+strings.Join(guestimage.DefaultModules, ",")+"; the veil kernel has none)")
	fs.StringVar(&o.Cmdline, "cmdline", guestimage.DefaultCmdline, "kernel command line recorded in the manifest")
	fs.StringVar(&o.ImageVersion, "image-version", "dev", "label written to /etc/veil/image.json")
	fs.StringVar(&o.Mirror, "mirror", "", "Debian mirror URI (default: the one the host's apt sources use)")
	fs.StringVar(&o.SimAuthority, "sim-authority", "", "sim authority file (from veil-image sim-authority) to put into the image:\n"+
		"the image can then boot as a guest of the simulated TEE (test only); default none")
	fs.BoolVar(&o.Force, "force", false, "rebuild even if --out already holds this build")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	k, err := kernel.ParseKind(*kernelKind)
	if err != nil {
		return err
	}
	o.Kernel = k
	if *modules != "" {
		o.Modules = splitList(*modules)
	}
	if *lockFile != "" {
		l, err := guestimage.ReadLock(*lockFile)
		if err != nil {
			return err
		}
		o.Lock, o.LockName = l, *lockFile
	}
	if o.Init == "" {
		// The agent is never /init: veil-init mounts the guest's filesystems, loads the
		// modules and starts it. With --init alone (a benchmark's trivial init) there is no agent.
		if o.Agent == "" {
			o.Agent = besideExecutable("veil-agent")
		}
		o.Init = besideExecutable("veil-init")
		if _, err := os.Stat(o.Init); err != nil {
			return fmt.Errorf("no /init: veil-init is not next to veil-image (%s); build it (make build) or pass --init PATH", o.Init)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err = guestimage.Build(ctx, o)
	return err
}

// splitList splits "a, b,c" into its non-empty elements.
func splitList(s string) []string {
	out := []string{}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// besideExecutable returns the path of name in this program's directory.
func besideExecutable(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return name
	}
	return filepath.Join(filepath.Dir(exe), name)
}

// simAuthority writes a new simulated-TEE authority (test only) into a directory.
func simAuthority(args []string) error {
	fs := flag.NewFlagSet("veil-image sim-authority", flag.ContinueOnError)
	out := fs.String("out", "", "directory for sim-authority.pem, sim-snp-roots.pem and sim-tdx-root.pem (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("usage: veil-image sim-authority --out DIR")
	}
	a, err := sim.NewAuthority(rand.Reader, sim.Options{})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := a.WriteFiles(*out); err != nil {
		return err
	}
	fmt.Printf("sim-authority: wrote the simulated TEE's test chain (never trusted by default) to %s\n", *out)
	return nil
}
