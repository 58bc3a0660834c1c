// Package sandbox is the host half of "one VM per pod": it boots a Veil VM from a guest image,
// waits until the agent answers, hands out agent connections, and tears everything down. The
// shim and veil-ctl both build on it.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/hypervisor/statedir"
)

// DefaultStateRoot holds one state directory per running sandbox.
const DefaultStateRoot = "/run/veil/sandboxes"

// DefaultBootTimeout bounds boot-to-agent-ready. TCG boots take seconds; the bound is generous
// so that a loaded CI machine does not fail a healthy boot.
const DefaultBootTimeout = 90 * time.Second

// Options says which VM to boot.
type Options struct {
	ID           string // names the state directory; required
	ImageDir     string // holds vmlinuz, initrd.img and manifest.json (veil-image build)
	StateRoot    string // "" picks DefaultStateRoot
	MemoryMiB    uint32
	VCPUs        uint32
	Machine      string
	Accel        hypervisor.Accel
	TCGCacheMiB  uint32 // 0 picks hypervisor.DefaultTCGCacheMiB
	Transport    hypervisor.Transport
	SharedDirs   []hypervisor.SharedDir
	Network      *hypervisor.Network // the pod's tap (shim/network); nil: loopback only
	KernelParams []string            // appended to the image's command line
	TEE          hypervisor.TEEConfig
	BootTimeout  time.Duration // "" picks DefaultBootTimeout
	// InitData is an initdata document (initdata) for the guest: delivered on a
	// read-only virtio-blk disk (initdata.DiskSerial) and, with a TEE, bound to the launch as
	// its host data (then TEE.HostData must be empty). nil: no disk, the agent allows all.
	InitData []byte
	// ScratchDisk is a file (CreateScratchDisk) attached read-write as the guest's scratch
	// disk (serial api.ScratchSerial), which the guest encrypts and keeps its image cache and
	// containers' roots on (agent/scratch). The caller owns the file: Close leaves it. "":
	// none, the guest keeps them in RAM.
	ScratchDisk string
}

// Sandbox is a booted VM with a connected agent.
type Sandbox struct {
	ID    string
	VM    hypervisor.VM
	Agent api.AgentService // typed client on the first connection
	// InitDataDigest is the digest of Options.InitData (nil without): the TEE's host data,
	// or, in a plain VM, for information only.
	InitDataDigest []byte
	client         *ttrpc.Client
	initDataDisk   string // the disk image's path, removed by Close
	simPSPDisk     string // the sim TEE's PSP disk image (tee sim), removed by Close
}

// Boot launches the VM and returns once the agent reports SERVING. On any failure it stops the
// VM, removes what it created, and returns an error that carries the end of the guest console.
func Boot(ctx context.Context, opts Options) (*Sandbox, error) {
	cfg, err := vmConfig(opts)
	if err != nil {
		return nil, err
	}
	// A VM whose owner was killed leaves its state directory behind (QEMU and virtiofsd die
	// with the owner); clear those first, so that a name can be used again.
	if _, err := statedir.Sweep(filepath.Dir(cfg.StateDir)); err != nil {
		return nil, fmt.Errorf("sandbox %s: clear stale state: %w", opts.ID, err)
	}
	if opts.ScratchDisk != "" {
		cfg.Disks = append(cfg.Disks, hypervisor.Disk{Path: opts.ScratchDisk, Serial: api.ScratchSerial})
	}
	var disk string
	var digest []byte
	if opts.InitData != nil {
		if disk, digest, err = attachInitData(&cfg, opts.InitData); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
		}
	}
	var psp string
	if cfg.TEE.Kind == hypervisor.TEESim {
		if psp, err = simPSP(&cfg, opts); err != nil {
			_ = removeInitData(disk)
			return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
		}
	}
	vm, err := newVM(cfg)
	if err != nil {
		_ = removeInitData(disk)
		_ = removeInitData(psp)
		return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
	}
	if err := vm.Start(ctx); err != nil {
		_ = vm.Stop(context.Background())
		_ = removeInitData(disk)
		_ = removeInitData(psp)
		return nil, fmt.Errorf("sandbox %s: start VM: %w", opts.ID, err)
	}
	s := &Sandbox{ID: opts.ID, VM: vm, InitDataDigest: digest, initDataDisk: disk, simPSPDisk: psp}
	timeout := opts.BootTimeout
	if timeout == 0 {
		timeout = DefaultBootTimeout
	}
	if err := s.connect(ctx, timeout); err != nil {
		tail := ConsoleTail(vm.ConsoleLog(), 30)
		_ = s.Close(context.Background())
		return nil, fmt.Errorf("sandbox %s: agent not ready: %w\nguest console (last lines):\n%s", opts.ID, err, tail)
	}
	return s, nil
}

// connect dials the agent and waits for a SERVING health check, giving up early when the VM
// exits.
func (s *Sandbox) connect(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	exited := make(chan error, 1)
	go func() { exited <- s.VM.Wait(ctx) }()
	ready := make(chan error, 1)
	go func() { ready <- s.dialAndCheck(ctx) }()
	select {
	case err := <-ready:
		return err
	case err := <-exited:
		if ctx.Err() != nil {
			return fmt.Errorf("no answer within %s", timeout)
		}
		return fmt.Errorf("VM exited during boot: %v", err)
	}
}

func (s *Sandbox) dialAndCheck(ctx context.Context) error {
	client, err := s.Dial(ctx)
	if err != nil {
		return err
	}
	agent := api.NewAgentClient(client)
	resp, err := agent.Check(ctx, &api.CheckRequest{})
	if err != nil {
		client.Close()
		return fmt.Errorf("health check: %w", err)
	}
	if resp.GetStatus() != api.CheckResponse_SERVING {
		client.Close()
		return fmt.Errorf("health check: agent is %s", resp.GetStatus())
	}
	s.client, s.Agent = client, agent
	return nil
}

// Dial opens a new connection to the agent and returns a ttrpc client on it.
func (s *Sandbox) Dial(ctx context.Context) (*ttrpc.Client, error) {
	conn, err := s.VM.DialAgent(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial agent: %w", err)
	}
	return ttrpc.NewClient(conn), nil
}

// DialConn opens a new raw connection to the agent (for proxies).
func (s *Sandbox) DialConn(ctx context.Context) (net.Conn, error) {
	return s.VM.DialAgent(ctx)
}

// Close asks the agent to destroy the sandbox (best effort, briefly), closes the client and
// stops the VM, removing every process, socket and file the VM had. It is safe to call twice.
func (s *Sandbox) Close(ctx context.Context) error {
	if s.client != nil {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _ = s.Agent.DestroySandbox(dctx, &api.DestroySandboxRequest{SandboxId: s.ID})
		cancel()
		s.client.Close()
		s.client = nil
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	if err := s.VM.Stop(sctx); err != nil {
		errs = append(errs, fmt.Errorf("sandbox %s: stop VM: %w", s.ID, err))
	}
	if err := removeInitData(s.initDataDisk); err != nil {
		errs = append(errs, fmt.Errorf("sandbox %s: %w", s.ID, err))
	}
	s.initDataDisk = ""
	if err := removeInitData(s.simPSPDisk); err != nil {
		errs = append(errs, fmt.Errorf("sandbox %s: %w", s.ID, err))
	}
	s.simPSPDisk = ""
	return errors.Join(errs...)
}

// ConsoleTail returns the last n lines of the console log, for error messages.
func ConsoleTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(console log unreadable: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func vmConfig(opts Options) (hypervisor.Config, error) {
	if opts.ID == "" {
		return hypervisor.Config{}, errors.New("sandbox: no id")
	}
	img, err := LoadImage(opts.ImageDir)
	if err != nil {
		return hypervisor.Config{}, err
	}
	root := opts.StateRoot
	if root == "" {
		root = DefaultStateRoot
	}
	return hypervisor.Config{
		ID:           opts.ID,
		StateDir:     filepath.Join(root, opts.ID),
		Kernel:       img.Kernel,
		Initrd:       img.Initrd,
		KernelParams: append(append([]string{}, img.Cmdline...), opts.KernelParams...),
		MemoryMiB:    opts.MemoryMiB,
		VCPUs:        opts.VCPUs,
		Machine:      opts.Machine,
		Accel:        opts.Accel,
		TCGCacheMiB:  opts.TCGCacheMiB,
		Transport:    opts.Transport,
		SharedDirs:   opts.SharedDirs,
		Network:      opts.Network,
		TEE:          opts.TEE,
	}, nil
}
