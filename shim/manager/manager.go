// Package manager is the shim's bootstrap side (containerd's shim.Shim): `start` launches
// the long-running shim process, or returns the address of the one that already serves the
// task's pod; `delete` cleans up after a shim that died; `-info` describes the runtime.
package manager

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/hypervisor/statedir"
	"github.com/veil-runtime/veil/shim/pod"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// RuntimeName is the runtime type containerd knows the shim by.
const RuntimeName = "io.containerd.veil.v2"

// Version is the shim's version, set at link time (-X).
var Version = "dev"

// Manager implements shim.Shim.
type Manager struct{ name string }

var _ shim.Shim = Manager{}

// New returns the manager of runtime name.
func New(name string) Manager { return Manager{name: name} }

// Name is the runtime type.
func (m Manager) Name() string { return m.name }

// readAnnotations reads the OCI spec's annotations from the bundle directory.
func readAnnotations(bundle string) (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse %s/config.json: %w", bundle, err)
	}
	return s.Annotations, nil
}

// Start launches the shim process for the task's pod, or returns the address of the shim
// that already serves it: every container of a pod shares one shim and one VM.
func (m Manager) Start(ctx context.Context, opts *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	id := opts.GetInstanceID()
	bundle, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	annotations, err := readAnnotations(bundle)
	if err != nil {
		return nil, err
	}
	grouping := pod.SandboxOf(id, annotations)
	socketDir := opts.GetSocketDir()
	if socketDir == "" {
		socketDir = filepath.Join(defaults.DefaultStateDir, "s")
	}
	result := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc"}
	address, err := shim.CreateSocketAddress(ctx, socketDir, opts.GetContainerdGrpcAddress(), grouping, false)
	if err != nil {
		return nil, err
	}
	l, err := listen(address)
	if errdefs.IsAlreadyExists(err) {
		result.Address = address // the pod's shim is up: join it
		return result, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = shim.RemoveSocket(address)
		}
	}()
	f, err := l.File()
	l.SetUnlinkOnClose(false) // the shim daemon serves the socket from the inherited fd
	l.Close()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	debug := opts.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG
	cmd, err := daemonCommand(ctx, id, opts.GetContainerdGrpcAddress(), bundle, debug)
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start shim daemon: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		log.G(ctx).WithError(err).Debug("adjust shim OOM score")
	}
	result.Address = address
	return result, nil
}

// listen creates the shim socket; ErrAlreadyExists means a live shim serves it.
func listen(address string) (*net.UnixListener, error) {
	l, err := shim.NewSocket(address)
	if err == nil {
		return l, nil
	}
	if !shim.SocketEaddrinuse(err) {
		return nil, fmt.Errorf("create shim socket: %w", err)
	}
	if shim.CanConnect(address) {
		return nil, errdefs.ErrAlreadyExists
	}
	if err := shim.RemoveSocket(address); err != nil {
		return nil, fmt.Errorf("remove stale shim socket: %w", err)
	}
	return shim.NewSocket(address)
}

// daemonCommand is the long-running shim: this binary again, without an action.
func daemonCommand(ctx context.Context, id, address, bundle string, debug bool) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", address}
	if debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = bundle
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// Stop is `containerd-shim-veil-v2 delete`, which containerd runs when a task's shim died:
// it unmounts the task's root filesystem and, for the pod's own task, kills what is left of
// the VM (QEMU and virtiofsd die with their shim; Sweep makes sure) and removes the pod's
// directories.
func (m Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	status := shim.StopStatus{ExitStatus: 128 + int(unix.SIGKILL), ExitedAt: time.Now()}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return status, err
	}
	bundle, _ := os.Getwd()
	if o, ok := ctx.Value(shim.OptsKey{}).(shim.Opts); ok && o.BundlePath != "" {
		bundle = o.BundlePath
	}
	annotations, err := readAnnotations(bundle)
	if err != nil {
		log.G(ctx).WithError(err).Warn("no OCI spec in the bundle: assuming a pod of its own")
	}
	sandboxID := pod.SandboxOf(id, annotations)
	vmID := pod.VMID(ns, sandboxID)
	if pod.OwnerAlive(vmID) {
		log.G(ctx).WithField("vm", vmID).Warn("delete: the pod's shim still runs; leaving its files alone")
		return status, nil
	}
	if err := pod.CleanupContainer(vmID, id); err != nil {
		log.G(ctx).WithError(err).Warn("delete: unmount task root filesystem")
	}
	if sandboxID == id {
		if _, err := statedir.Sweep(sandbox.DefaultStateRoot); err != nil {
			log.G(ctx).WithError(err).Warn("delete: sweep VM state")
		}
		if err := pod.CleanupPod(vmID); err != nil {
			return status, fmt.Errorf("delete %s: %w", id, err)
		}
	}
	return status, nil
}

// Info describes the runtime to containerd.
func (m Manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	return &types.RuntimeInfo{
		Name:    m.name,
		Version: &types.RuntimeVersion{Version: Version},
	}, nil
}
