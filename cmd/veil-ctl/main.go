// Command veil-ctl boots a Veil VM and drives its agent directly: run a container, exec into
// it, list or signal its processes, or send any raw API request. See docs/veil-ctl.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/api/jsoncall"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/shim/ctl"
)

const usage = `usage:
  veil-ctl run   --image DIR --rootfs DIR [--name NAME] [-i] [-t] [--memory-limit BYTES] -- CMD [ARG...]
  veil-ctl exec  --name NAME [--exec-id ID] [-i] [-t] -- CMD [ARG...]
  veil-ctl ps    --name NAME
  veil-ctl kill  --name NAME [--exec-id ID] [--all] SIGNAL
  veil-ctl call  --name NAME METHOD [JSON]     (veil-ctl call --list: every method)
  veil-ctl decisions --name NAME [--max-bytes N]   (the policy's decision log, JSON lines)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx := context.Background()
	var (
		status int
		err    error
	)
	switch os.Args[1] {
	case "run":
		status, err = run(ctx, os.Args[2:])
	case "exec":
		status, err = execCmd(ctx, os.Args[2:])
	case "ps":
		err = psCmd(ctx, os.Args[2:])
	case "kill":
		err = killCmd(ctx, os.Args[2:])
	case "call":
		err = callCmd(ctx, os.Args[2:])
	case "decisions":
		err = decisionsCmd(ctx, os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		err = fmt.Errorf("unknown command %q\n%s", os.Args[1], usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "veil-ctl:", err)
		if status == 0 {
			status = 1
		}
	}
	os.Exit(status)
}

func run(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	image := fs.String("image", "", "guest image directory (veil-image build --out DIR)")
	rootfs := fs.String("rootfs", "", "host directory shared into the guest as the container's root")
	name := fs.String("name", "", "name the VM: other veil-ctl commands reach it by this name")
	interactive := fs.Bool("i", false, "relay stdin to the container")
	tty := fs.Bool("t", false, "give the container a terminal")
	memLimit := fs.Int64("memory-limit", 0, "container memory limit in bytes (0: none)")
	memory := fs.Uint("memory", 0, "VM memory in MiB (0: the driver's default)")
	cpus := fs.Uint("cpus", 0, "VM vCPUs (0: the driver's default)")
	accel := fs.String("accel", "auto", "QEMU accelerator: auto, kvm or tcg")
	readonly := fs.Bool("read-only", false, "mount the container's root filesystem read-only")
	quiet := fs.Bool("q", false, "do not print progress lines")
	var env multiFlag
	fs.Var(&env, "env", "KEY=VALUE for the container (repeatable)")
	fs.Parse(args)
	if *image == "" || *rootfs == "" || fs.NArg() == 0 {
		return 2, errors.New("run needs --image, --rootfs and a command\n" + usage)
	}
	o := ctl.RunOptions{
		Name: *name, ImageDir: *image, RootFS: *rootfs, Interactive: *interactive,
		MemoryMiB: uint32(*memory), VCPUs: uint32(*cpus), Accel: hypervisor.Accel(*accel),
		Spec: ctl.SpecOptions{
			Args: fs.Args(), Env: env, Terminal: *tty, ReadOnlyRoot: *readonly,
			MemoryLimitBytes: *memLimit, Hostname: "veil",
		},
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	}
	if !*quiet {
		o.Log = os.Stderr
	}
	return ctl.Run(ctx, o)
}

func execCmd(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("exec", flag.ExitOnError)
	name := fs.String("name", "", "the VM's name (veil-ctl run --name)")
	execID := fs.String("exec-id", fmt.Sprintf("exec-%d", os.Getpid()), "id of the new process")
	interactive := fs.Bool("i", false, "relay stdin to the process")
	tty := fs.Bool("t", false, "give the process a terminal")
	cwd := fs.String("cwd", "/", "working directory")
	var env multiFlag
	fs.Var(&env, "env", "KEY=VALUE (repeatable)")
	fs.Parse(args)
	if *name == "" || fs.NArg() == 0 {
		return 2, errors.New("exec needs --name and a command\n" + usage)
	}
	p := &api.Process{
		Args: fs.Args(), Cwd: *cwd, Terminal: *tty, Stdin: *interactive,
		Env: append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...),
	}
	return ctl.Exec(ctx, ctl.ExecOptions{
		Name: *name, ExecID: *execID, Process: p, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	})
}

func psCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ps", flag.ExitOnError)
	name := fs.String("name", "", "the VM's name")
	fs.Parse(args)
	if *name == "" {
		return errors.New("ps needs --name")
	}
	return ctl.PS(ctx, *name, os.Stdout)
}

func killCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("kill", flag.ExitOnError)
	name := fs.String("name", "", "the VM's name")
	execID := fs.String("exec-id", "", "the process (empty: the container's init)")
	all := fs.Bool("all", false, "signal every process of the container")
	fs.Parse(args)
	if *name == "" || fs.NArg() != 1 {
		return errors.New("kill needs --name and one SIGNAL")
	}
	return ctl.Kill(ctx, *name, *execID, fs.Arg(0), *all)
}

func callCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("call", flag.ExitOnError)
	name := fs.String("name", "", "the VM's name")
	list := fs.Bool("list", false, "list every method")
	fs.Parse(args)
	if *list {
		fmt.Println(strings.Join(jsoncall.Methods(), "\n"))
		return nil
	}
	if *name == "" || fs.NArg() < 1 || fs.NArg() > 2 {
		return errors.New("call needs --name, a METHOD and optionally its JSON request")
	}
	return ctl.Call(ctx, *name, fs.Arg(0), fs.Arg(1), os.Stdout)
}

// decisionsCmd prints the agent's decision log (ReadDecisionLog), oldest line first; the
// agent's policy must allow it (the baseline does only for a debugging policy).
func decisionsCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("decisions", flag.ExitOnError)
	name := fs.String("name", "", "the VM's name")
	maxBytes := fs.Uint64("max-bytes", 0, "only the newest lines that fit in this many bytes (0: all)")
	fs.Parse(args)
	if *name == "" || fs.NArg() != 0 {
		return errors.New("decisions needs --name and no arguments")
	}
	c, err := ctl.Connect(ctx, *name)
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := api.NewAgentClient(c).ReadDecisionLog(ctx, &api.ReadDecisionLogRequest{MaxBytes: *maxBytes})
	if err != nil {
		return fmt.Errorf("ReadDecisionLog: %w", err)
	}
	if _, err := os.Stdout.Write(r.GetData()); err != nil {
		return err
	}
	if r.GetDropped() > 0 {
		fmt.Fprintf(os.Stderr, "veil-ctl: %d older decisions were dropped\n", r.GetDropped())
	}
	return nil
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
