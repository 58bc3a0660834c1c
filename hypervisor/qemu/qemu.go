// Package qemu runs a hypervisor.VM with QEMU (qemu-system-x86_64): it builds the command
// line (CommandLine, a pure function), picks the accelerator (probing whether KVM really
// works), starts virtiofsd for shared directories, drives QEMU over QMP, and reaches the
// agent over virtio-serial or vsock.
//
// QEMU and virtiofsd run in their own process groups with a parent-death signal, so they die
// with their owner; if the owner is SIGKILLed, statedir.Sweep cleans what is left.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/hypervisor/qmp"
	"github.com/veil-runtime/veil/hypervisor/statedir"
	"github.com/veil-runtime/veil/hypervisor/transport"
)

var _ hypervisor.VM = (*VM)(nil)

// VM is one QEMU virtual machine. Start runs once; Wait may be called by many; Stop is
// idempotent. All methods are safe for concurrent use.
type VM struct {
	cfg  hypervisor.Config // defaults applied, Transport resolved
	opts options

	mu      sync.Mutex // serialises Start and Stop; guards the fields below it
	stopped bool
	stopErr error
	dir     *statedir.Dir
	qemu    *process
	fsds    []*process
	vhost   *os.File // holds the vsock cid until QEMU has it
	tap     *os.File // the tap opened in Network.Netns, until QEMU has it
	qmp     *qmp.Client
	serial  *transport.VirtioSerial

	started  atomic.Bool
	launched chan struct{} // closed when Start has returned
	cid      uint32        // set before launched closes
	pid      atomic.Int64
	done     chan struct{} // closed when QEMU has exited (or Start failed)
	err      error         // Wait's answer; set before done closes
	life     context.Context
	endLife  context.CancelFunc // cancels life when done closes

	fatalMu sync.Mutex
	fatal   error // why the driver ended a running VM (a virtiofsd died); read by watch
}

// New checks cfg (see Validate) and returns a VM that is not started yet. An empty
// Transport becomes vsock when the host has /dev/vhost-vsock, else virtio-serial.
func New(cfg hypervisor.Config, opts ...Option) (*VM, error) {
	if err := Validate(cfg); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if cfg.Transport == "" {
		cfg.Transport = hypervisor.TransportVirtioSerial
		if hasVhostVsock() {
			cfg.Transport = hypervisor.TransportVsock
		}
	}
	v := &VM{cfg: cfg, opts: newOptions(opts), launched: make(chan struct{}), done: make(chan struct{})}
	v.life, v.endLife = context.WithCancel(context.Background())
	if cfg.Transport == hypervisor.TransportVirtioSerial {
		v.serial = transport.NewVirtioSerial(filepath.Join(cfg.StateDir, agentSocket))
	}
	return v, nil
}

// Config is the VM's configuration with defaults applied and the transport resolved.
func (v *VM) Config() hypervisor.Config { return v.cfg }

// ConsoleLog is the file that receives the guest's serial console.
func (v *VM) ConsoleLog() string { return filepath.Join(v.cfg.StateDir, consoleFile) }

// PID is QEMU's pid (0 before Start).
func (v *VM) PID() int { return int(v.pid.Load()) }

// Start creates the state directory, starts virtiofsd for each share and QEMU (paused),
// connects to QMP and lets the guest run. ctx bounds the start only, not the VM's life. On
// failure everything created is removed again and Wait returns the same error.
func (v *VM) Start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.started.Swap(true) {
		return hypervisor.ErrAlreadyStarted
	}
	defer close(v.launched)
	if v.stopped {
		err := fmt.Errorf("qemu: start %s: the VM was stopped already", v.cfg.ID)
		v.finish(err)
		return err
	}
	if err := v.launch(ctx); err != nil {
		_ = v.teardown()
		v.finish(err)
		return err
	}
	go v.watch(v.qemu)
	for i, fs := range v.fsds {
		go v.watchShare(i, fs)
	}
	return nil
}

// watchShare ends the VM when share i's virtiofsd dies while QEMU runs: the guest's file
// system on that share would hang on every access, so the pod stops instead, and Wait names
// the virtiofsd and how it ended. A virtiofsd stopped after QEMU (Stop, or QEMU's own end)
// is the normal order and changes nothing.
func (v *VM) watchShare(i int, fs *process) {
	select {
	case <-v.done:
		return
	case <-fs.done:
	}
	// A virtiofsd also ends, cleanly, when QEMU dies and closes its socket, a moment before
	// QEMU is reaped: QEMU's end within the grace is the cause, not this.
	select {
	case <-v.done:
		return
	case <-time.After(shareDeathGrace):
	}
	cause := fs.err
	if cause == nil {
		cause = fmt.Errorf("%s (pid %d) exited with status 0", fs.name, fs.pid())
	}
	v.fatalMu.Lock()
	if v.fatal == nil { // the first share to die is the cause; the others follow QEMU
		v.fatal = fmt.Errorf("virtiofsd of shared dir %q ended while the VM ran: %w", v.cfg.SharedDirs[i].Tag, cause)
	}
	v.fatalMu.Unlock()
	v.qemu.signal(syscall.SIGKILL)
}

// shareDeathGrace is how long watchShare lets QEMU end on its own after a virtiofsd ended.
const shareDeathGrace = 500 * time.Millisecond

// launch does Start's work; Start undoes it on failure.
func (v *VM) launch(ctx context.Context) error {
	bin, err := v.opts.qemuBinary()
	if err != nil {
		return err
	}
	ver, err := binaryVersion(ctx, bin)
	if err != nil {
		return err
	}
	if err := checkVersion(ver, v.cfg.TEE.Kind); err != nil {
		return err
	}
	accel, err := resolveAccel(ctx, v.cfg, bin, ver, v.opts)
	if err != nil {
		return err
	}
	host := Host{Accel: accel, CPU: v.opts.cpu}
	if host.CPU == "" && accel == hypervisor.AccelTCG {
		host.CPU = tcgCPU(ver)
	}
	if v.dir, err = statedir.Create(v.cfg.StateDir); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	if v.cfg.Transport == hypervisor.TransportVsock {
		if v.cid, v.vhost, err = reserveCID(); err != nil {
			return err
		}
		host.GuestCID, host.VhostFD = v.cid, 3 // the first of ExtraFiles
	}
	if n := v.cfg.Network; n != nil && n.Netns != "" {
		if v.tap, err = openTap(n.Netns, n.TapName); err != nil {
			return err
		}
		host.TapFD = 3 + len(v.extraFiles()) - 1 // the last of ExtraFiles
	}
	if err := v.startShares(ctx); err != nil {
		return err
	}
	return v.startQEMU(ctx, bin, host)
}

func (v *VM) startShares(ctx context.Context) error {
	if len(v.cfg.SharedDirs) == 0 {
		return nil
	}
	bin, err := v.opts.virtiofsdBinary()
	if err != nil {
		return err
	}
	flavour, err := detectVirtiofsd(ctx, bin)
	if err != nil {
		return err
	}
	for i := range v.cfg.SharedDirs {
		p, err := v.startVirtiofsd(ctx, bin, i, flavour)
		if err != nil {
			return err
		}
		v.fsds = append(v.fsds, p)
	}
	return nil
}

func (v *VM) startQEMU(ctx context.Context, bin string, host Host) error {
	args, err := CommandLine(v.cfg, host)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = v.extraFiles()
	if v.qemu, err = startProcess("qemu", cmd, v.dir); err != nil {
		return err
	}
	v.pid.Store(int64(v.qemu.pid()))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-v.qemu.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := qmp.Dial(ctx, v.dir.File(qmpSocket))
	if err == nil {
		v.qmp = c
		err = c.Cont(ctx)
	}
	if err == nil {
		return nil
	}
	select { // a QMP failure is most often QEMU dying: say why it did
	case <-v.qemu.done:
		return v.exitError("qemu ended during start")
	case <-time.After(time.Second):
		return fmt.Errorf("qemu: start %s: %w", v.cfg.ID, err)
	}
}

// exitError describes how QEMU ended, with the end of its log.
func (v *VM) exitError(what string) error {
	err := v.qemu.err
	if err == nil {
		err = errors.New("qemu exited with status 0")
	}
	if tail := v.qemu.logTail(); tail != "" {
		return fmt.Errorf("%s: %w: %s", what, err, tail)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// watch records QEMU's end for Wait, then stops the virtiofsd servers it leaves idle.
func (v *VM) watch(p *process) {
	<-p.done
	v.fatalMu.Lock()
	fatal := v.fatal
	v.fatalMu.Unlock()
	if fatal != nil {
		v.finish(fmt.Errorf("qemu: VM %s stopped: %w", v.cfg.ID, fatal))
	} else if p.err != nil {
		v.finish(v.exitError("qemu: VM " + v.cfg.ID))
	} else {
		v.finish(nil)
	}
	for _, fs := range v.fsds {
		fs.stop(time.Second)
	}
}

func (v *VM) finish(err error) {
	v.err = err
	close(v.done)
	v.endLife()
}

// Wait blocks until QEMU has exited and returns why: nil for a clean exit (the guest powered
// off or rebooted, or QEMU was told to quit), else an error naming the signal or status.
func (v *VM) Wait(ctx context.Context) error {
	if !v.started.Load() {
		return hypervisor.ErrNotStarted
	}
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		return fmt.Errorf("qemu: wait for VM %s: %w", v.cfg.ID, ctx.Err())
	}
}

// DialAgent connects to the agent over the VM's transport, retrying until ctx ends or the VM
// exits. Each call returns a new connection.
func (v *VM) DialAgent(ctx context.Context) (net.Conn, error) {
	if !v.started.Load() {
		return nil, hypervisor.ErrNotStarted
	}
	select {
	case <-v.launched:
	case <-ctx.Done():
		return nil, fmt.Errorf("qemu: dial agent: %w", ctx.Err())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(v.life, cancel)
	defer stop()
	var conn net.Conn
	var err error
	if v.cfg.Transport == hypervisor.TransportVsock {
		conn, err = transport.DialVsock(ctx, v.cid, api.AgentVsockPort)
	} else {
		conn, err = v.serial.DialAgent(ctx)
	}
	if err != nil {
		select {
		case <-v.done:
			return nil, fmt.Errorf("qemu: dial agent: VM %s has exited (%v): %w", v.cfg.ID, v.err, err)
		default:
		}
		return nil, fmt.Errorf("qemu: dial agent: %w", err)
	}
	return conn, nil
}
