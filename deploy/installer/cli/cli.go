// Package cli is veil-deploy's command line: the subcommands check, install, uninstall,
// run (the DaemonSet's), ready (its readiness probe) and payload (for the image build), their
// flags and the environment variables the DaemonSet sets. docs/kubernetes.md documents them.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/veil-runtime/veil/deploy/installer"
)

const usage = `usage: veil-deploy COMMAND [flags]

commands:
  check       print what this node can run, one line per check (KVM, SNP, TDX, QEMU,
              virtiofsd, containerd and its config, handlers, what is installed)
  install     install the payload under /opt/veil and declare the handlers to containerd
  uninstall   remove the node labels, containerd's Veil runtimes and every installed file
              (refused while Veil pods run, unless --force)
  run         install, label the node, report ready, wait for SIGTERM (the DaemonSet's)
  ready       exit 0 when run has finished installing (the readiness probe)
  payload     write a payload directory with SHA256SUMS (for building the installer image)

Run "veil-deploy COMMAND -h" for the flags of each.
`

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitRunning = 3 // uninstall refused: Veil pods run on the node
)

// Main runs veil-deploy with args (without the program name) and returns the exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "check", "install", "uninstall", "run":
		err = node(ctx, cmd, args, stdout, stderr)
	case "ready":
		err = ready(args, stderr)
	case "payload":
		err = buildPayload(args, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "veil-deploy: unknown command %q\n%s", cmd, usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "veil-deploy %s: %v\n", cmd, err)
		return exitUsage
	case errors.Is(err, installer.ErrPodsRunning):
		fmt.Fprintf(stderr, "veil-deploy %s: %v\n", cmd, err)
		return exitRunning
	}
	fmt.Fprintf(stderr, "veil-deploy %s: %v\n", cmd, err)
	return exitFailed
}

var errUsage = errors.New("usage")

// envBool reads a boolean environment variable; unset or empty is def.
func envBool(name string, def bool) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s=%q: want true or false", errUsage, name, v)
	}
	return b, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func node(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("veil-deploy "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	sim, err := envBool("VEIL_ENABLE_SIM", false)
	if err != nil {
		return err
	}
	uninstallOnExit, err := envBool("VEIL_UNINSTALL_ON_EXIT", false)
	if err != nil {
		return err
	}
	snap, err := envBool("VEIL_SNAPSHOTTER", false)
	if err != nil {
		return err
	}
	o := installer.Options{Log: stderr}
	fs.StringVar(&o.HostRoot, "host-root", "/host", "where the host's / is mounted (/ on the host itself)")
	fs.StringVar(&o.Payload, "payload", "/opt/veil-payload", "the payload directory: files to install and their SHA256SUMS")
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name, for its labels ($NODE_NAME)")
	fs.StringVar(&o.ContainerdConfig, "containerd-config", os.Getenv("VEIL_CONTAINERD_CONFIG"),
		"containerd's main config file, a host path (default: the running containerd's --config, else /etc/containerd/config.toml; $VEIL_CONTAINERD_CONFIG)")
	fs.StringVar(&o.ContainerdSocket, "containerd-socket", os.Getenv("VEIL_CONTAINERD_SOCKET"),
		"containerd's socket, a host path, waited for after a restart (default: the config's grpc address; $VEIL_CONTAINERD_SOCKET)")
	fs.StringVar(&o.Restart, "restart", envOr("VEIL_RESTART", "auto"),
		"how to restart containerd: auto, systemd[:UNIT], signal:PIDFILE[:SIG], command:SHELL or none ($VEIL_RESTART)")
	fs.BoolVar(&o.EnableSim, "enable-sim", sim, "install veil-sim, the simulated TEE: development and CI only ($VEIL_ENABLE_SIM)")
	fs.BoolVar(&o.Snapshotter, "snapshotter", snap, "run veil-snapshotter (a systemd unit of the host) as the guest-pull handlers' "+
		"containerd snapshotter, so that the host fetches no image layer for them; containerd 2.x (docs/snapshotter.md; $VEIL_SNAPSHOTTER)")
	var ro installer.RunOptions
	switch cmd {
	case "uninstall":
		fs.BoolVar(&o.Force, "force", false, "uninstall even while Veil pods run on the node (they lose their runtime)")
	case "run":
		fs.StringVar(&ro.ReadyFile, "ready-file", installer.DefaultReadyFile, "created once installed and labelled")
		fs.BoolVar(&ro.UninstallOnExit, "uninstall-on-exit", uninstallOnExit,
			"uninstall on SIGTERM (off: a DaemonSet pod also stops on upgrades; $VEIL_UNINSTALL_ON_EXIT)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	in, err := installer.New(o)
	if err != nil {
		return err
	}
	switch cmd {
	case "check":
		_, err = in.Check(ctx, stdout)
	case "install":
		_, err = in.Install(ctx)
	case "uninstall":
		err = in.Uninstall(ctx)
	case "run":
		err = in.Run(ctx, ro)
	}
	return err
}

func ready(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("veil-deploy ready", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("ready-file", installer.DefaultReadyFile, "the file run creates once installed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(*file); err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	return nil
}

func buildPayload(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("veil-deploy payload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o installer.PayloadOptions
	fs.StringVar(&o.Out, "out", "", "the payload directory to write (the image's /opt/veil-payload)")
	fs.StringVar(&o.Shim, "shim", "bin/containerd-shim-veil-v2", "the shim binary")
	fs.StringVar(&o.Ctl, "ctl", "", "veil-ctl, installed too when given")
	fs.StringVar(&o.Snapshotter, "snapshotter", "", "veil-snapshotter, installed too when given (run with --snapshotter)")
	fs.StringVar(&o.Image, "image", "build/image", "the guest image directory")
	fs.StringVar(&o.Config, "config", "shim/config/configuration.toml", "the configuration each handler's file derives from")
	fs.StringVar(&o.FirmwareSNP, "firmware-snp", "", "OVMF for SNP guests (without it, no veil-snp)")
	fs.StringVar(&o.FirmwareTDX, "firmware-tdx", "", "OVMF for TDX guests (without it, no veil-tdx)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Out == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: payload needs --out DIR and takes no arguments", errUsage)
	}
	m, err := installer.BuildPayload(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "veil-deploy payload: %d files in %s\n", len(m.Files), o.Out)
	return nil
}
