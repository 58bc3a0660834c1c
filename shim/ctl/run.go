package ctl

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/shim/stdio"
)

// ControlRoot holds one directory per named VM: agent.sock there reaches its agent.
const ControlRoot = "/run/veil/ctl"

// rootfsTag is the virtio-fs tag of the shared root filesystem.
const rootfsTag = "veil-rootfs"

// RunOptions describe `veil-ctl run`.
type RunOptions struct {
	Name        string // "" : no control socket, container id "ctr"
	ImageDir    string
	RootFS      string // host directory shared into the guest as the container's root
	Spec        SpecOptions
	Interactive bool // relay stdin
	MemoryMiB   uint32
	VCPUs       uint32
	Accel       hypervisor.Accel
	Stdin       io.Reader
	Stdout      io.Writer
	Stderr      io.Writer
	Log         io.Writer // progress lines; nil for none
}

// Run boots a VM, runs one container in it, relays its stdio and returns its exit status.
func Run(ctx context.Context, o RunOptions) (int, error) {
	id := o.Name
	if id == "" {
		id = fmt.Sprintf("ctl-%d", os.Getpid())
	}
	rootfs, err := filepath.Abs(o.RootFS)
	if err != nil {
		return 0, err
	}
	if st, err := os.Stat(rootfs); err != nil || !st.IsDir() {
		return 0, fmt.Errorf("--rootfs %s is not a directory", o.RootFS)
	}
	logf(o.Log, "booting VM %s from %s", id, o.ImageDir)
	sb, err := sandbox.Boot(ctx, sandbox.Options{
		ID: id, ImageDir: o.ImageDir, MemoryMiB: o.MemoryMiB, VCPUs: o.VCPUs, Accel: o.Accel,
		SharedDirs: []hypervisor.SharedDir{{Tag: rootfsTag, HostPath: rootfs}},
	})
	if err != nil {
		return 0, err
	}
	defer sb.Close(context.Background())
	logf(o.Log, "agent ready (VM pid %d)", sb.VM.PID())
	return runContainer(ctx, sb, id, o)
}

func runContainer(ctx context.Context, sb *sandbox.Sandbox, id string, o RunOptions) (int, error) {
	agent := sb.Agent
	if _, err := agent.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: id, Hostname: o.Spec.Hostname}); err != nil {
		return 0, fmt.Errorf("create sandbox: %w", err)
	}
	mnt := api.StorageDir + "/" + id + "/rootfs" // a storage of the host's own, not the pod's share
	o.Spec.RootPath = mnt
	spec, err := Spec(o.Spec)
	if err != nil {
		return 0, err
	}
	_, err = agent.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: id, OciSpec: spec, Stdin: o.Interactive,
		Storages: []*api.Storage{{Driver: api.DriverVirtioFS, Source: rootfsTag, MountPoint: mnt}},
	})
	if err != nil {
		return 0, fmt.Errorf("create container: %w", err)
	}
	logf(o.Log, "container %s created; starting %q", id, o.Spec.Args)
	p := stdio.Process{Agent: agent, ContainerID: id}
	stopControl := func() {}
	defer func() { stopControl() }()
	return relayAndWait(ctx, p, o.Interactive, o.Spec.Terminal, o.Stdin, o.Stdout, o.Stderr, func() error {
		if _, err := agent.StartContainer(ctx, &api.StartContainerRequest{ContainerId: id}); err != nil {
			return err
		}
		if o.Name == "" {
			return nil
		}
		// The control socket appears once the container runs, so that a caller that waits
		// for it can exec at once.
		stop, err := serveControl(ctx, sb, o.Name)
		stopControl = stop
		return err
	})
}

// relayAndWait starts the output relays, calls start, feeds stdin, forwards SIGINT/SIGTERM,
// and returns the exit status once the process exited and its output is drained.
func relayAndWait(ctx context.Context, p stdio.Process, interactive, tty bool, in io.Reader, out, errw io.Writer, start func() error) (int, error) {
	// The agent buffers output until it is read, so the relays can begin after start (an exec'd
	// process does not exist before it).
	if err := start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", p, err)
	}
	var wg sync.WaitGroup
	relayErr := make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); relayErr <- p.CopyStdout(ctx, out) }()
	go func() { defer wg.Done(); relayErr <- p.CopyStderr(ctx, errw) }()
	if tty {
		restore := rawTerminal(ctx, p)
		defer restore()
	}
	if interactive {
		go func() { _ = p.CopyStdin(ctx, in) }()
	}
	stopSignals := forwardSignals(ctx, p)
	defer stopSignals()
	resp, err := p.Agent.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: p.ContainerID, ExecId: p.ExecID})
	if err != nil {
		return 0, fmt.Errorf("wait for %s: %w", p, err)
	}
	wg.Wait()
	close(relayErr)
	for err := range relayErr {
		if err != nil {
			return int(resp.GetStatus()), err
		}
	}
	return int(resp.GetStatus()), nil
}

func forwardSignals(ctx context.Context, p stdio.Process) func() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-ch:
				_, _ = p.Agent.SignalProcess(ctx, &api.SignalProcessRequest{
					ContainerId: p.ContainerID, ExecId: p.ExecID, Signal: uint32(s.(syscall.Signal)),
				})
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// serveControl exposes the agent on ControlRoot/<name>/agent.sock while the VM runs.
func serveControl(ctx context.Context, sb *sandbox.Sandbox, name string) (func(), error) {
	dir := filepath.Join(ControlRoot, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "agent.sock")
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = sb.ServeProxy(ctx, l) }()
	return func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}, nil
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, "veil-ctl: "+format+"\n", args...)
	}
}
