// Package pod is one Veil sandbox as the shim sees it: a VM (shim/sandbox) plus the host
// directory that is shared into it through a single virtio-fs share. Container root
// filesystems and bind-mount sources are mounted below that directory after the VM booted;
// the directory is a shared mount, so they propagate into virtiofsd's mount namespace and
// the guest sees them under api.SharedDir.
package pod

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/shim/config"
	"github.com/veil-runtime/veil/shim/network"
	"github.com/veil-runtime/veil/shim/podcgroup"
	"github.com/veil-runtime/veil/shim/portfwd"
	"github.com/veil-runtime/veil/shim/sandbox"
)

const (
	// Root holds one directory per pod: Root/<vm id>/shared is the shared directory.
	Root = "/run/veil/shim"
	// DebugLogLevel is the guest log level a debug console asks for.
	debugLogLevel = "veil.log_level=debug"
)

// Pod is a booted sandbox VM and its shared directory.
type Pod struct {
	ID      string // the sandbox id (the pod's, or the container's for a plain ctr run)
	VMID    string // names the VM and its directories
	Dir     string // Root/VMID
	Sandbox *sandbox.Sandbox
	// GuestEmptyDirs: the pod's kubelet emptyDir volumes are kept in the guest (an
	// api.DriverEmptyDir storage each), not shared from the host: when the VM has a scratch
	// disk (the volumes live on it, encrypted) or a TEE (the guest keeps them in its RAM
	// without one). A plain VM without a scratch disk shares them, since its host is trusted.
	GuestEmptyDirs bool

	cg       *podcgroup.Group   // the sandbox cgroup the shim, QEMU and virtiofsd run in, or nil
	net      *network.Endpoint  // the pod network wired into the VM, or nil
	fwd      *portfwd.Forwarder // port forwarding into the VM, or nil
	stopTail context.CancelFunc
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// VMID names the VM of sandbox id in containerd namespace ns: readable, unique across
// namespaces, and short enough for the hypervisor's id rules and socket paths.
func VMID(ns, id string) string {
	sum := sha256.Sum256([]byte(ns + "/" + id))
	base := unsafeChars.ReplaceAllString(id, "_")
	if len(base) > 40 {
		base = base[:40]
	}
	if base == "" || base[0] == '_' || base[0] == '.' || base[0] == '-' {
		base = "v" + base
	}
	return base + "-" + hex.EncodeToString(sum[:])[:12]
}

// DirOf is the pod directory of a VM id.
func DirOf(vmID string) string { return filepath.Join(Root, vmID) }

// SharedDir is the host side of the share.
func (p *Pod) SharedDir() string { return filepath.Join(p.Dir, "shared") }

// Create makes the shared directory, moves the shim into the pod's sandbox cgroup
// (cgroupsPath, the sandbox container's OCI linux.cgroupsPath; "" for a cgroup of the shim's
// own), wires the pod's network namespace netnsPath (CNI's; "" for none) into the VM, boots
// the VM with the pod's initdata document (nil for none) and sets up the guest sandbox. On
// failure it removes everything it made.
func Create(ctx context.Context, cfg *config.Config, ns, id, cgroupsPath, netnsPath string, initData []byte) (_ *Pod, retErr error) {
	vmID := VMID(ns, id)
	p := &Pod{ID: id, VMID: vmID, Dir: DirOf(vmID)}
	// A pod directory of the same name is a leftover of a shim that died: clear it.
	if err := CleanupPod(vmID); err != nil {
		return nil, fmt.Errorf("pod %s: clear leftover %s: %w", id, p.Dir, err)
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	if err := writeOwner(p.Dir); err != nil {
		_ = Cleanup(p.Dir)
		return nil, fmt.Errorf("pod %s: record owner: %w", id, err)
	}
	if err := makeSharedDir(p.SharedDir()); err != nil {
		_ = Cleanup(p.Dir)
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			_ = p.Close(context.WithoutCancel(ctx))
		}
	}()
	if err := p.joinCgroup(ctx, cgroupsPath); err != nil {
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	h := cfg.Hypervisor
	params := append([]string(nil), h.KernelParams...)
	if h.DebugConsole {
		params = append(params, debugLogLevel)
	}
	opts := sandbox.Options{
		ID: vmID, ImageDir: h.Image, MemoryMiB: h.MemoryMiB, VCPUs: h.VCPUs,
		Machine: h.Machine, Accel: hypervisor.Accel(h.Accel), TCGCacheMiB: h.TCGCacheMiB, KernelParams: params,
		TEE:         hypervisor.TEEConfig{Kind: hypervisor.TEE(h.TEE), Firmware: h.Firmware},
		BootTimeout: h.BootTimeout.Duration,
		SharedDirs:  []hypervisor.SharedDir{{Tag: api.ShareTag, HostPath: p.SharedDir()}},
		InitData:    initData,
	}
	var err error
	if opts.ScratchDisk, err = p.createScratch(h); err != nil {
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	p.GuestEmptyDirs = opts.ScratchDisk != "" || opts.TEE.Kind != hypervisor.TEENone
	if p.net, err = setupNetwork(ctx, netnsPath, &opts); err != nil {
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	start := time.Now()
	sb, err := sandbox.Boot(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	p.Sandbox = sb
	log.G(ctx).WithFields(log.Fields{"vm": vmID, "qemu_pid": sb.VM.PID(), "boot": time.Since(start)}).Info("sandbox VM ready")
	if h.DebugConsole {
		tctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		p.stopTail = cancel
		go tailConsole(tctx, sb.VM.ConsoleLog(), log.G(ctx).WithField("vm", vmID))
	}
	_, err = sb.Agent.CreateSandbox(ctx, &api.CreateSandboxRequest{
		SandboxId: id,
		Storages:  []*api.Storage{{Driver: api.DriverVirtioFS, Source: api.ShareTag, MountPoint: api.SharedDir}},
	})
	if err != nil {
		return nil, fmt.Errorf("pod %s: CreateSandbox: %w", id, err)
	}
	if err := configureGuestNetwork(ctx, sb.Agent, p.net); err != nil {
		return nil, fmt.Errorf("pod %s: %w", id, err)
	}
	if p.net != nil {
		// containerd forwards ports by dialling the pod namespace's loopback: carry those
		// connections into the VM. A pod runs without it if it cannot start.
		if p.fwd, err = portfwd.Start(ctx, p.net.Netns, sb.Agent); err != nil {
			log.G(ctx).WithError(err).Warn("port forwarding unavailable for this pod")
		}
	}
	return p, nil
}

// makeSharedDir creates dir as a shared bind mount of itself, so that mounts made below it
// later propagate into the namespace virtiofsd makes when it starts (/ is private here).
func makeSharedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

// Close destroys the guest sandbox, stops the VM and removes every mount and file of the
// pod. It is safe to call twice.
func (p *Pod) Close(ctx context.Context) error {
	var err error
	if p.fwd != nil {
		if ferr := p.fwd.Close(); ferr != nil {
			log.G(ctx).WithError(ferr).Warn("stop port forwarding")
		}
		p.fwd = nil
	}
	if p.Sandbox != nil {
		err = p.Sandbox.Close(ctx)
		p.Sandbox = nil
	}
	if p.stopTail != nil {
		p.stopTail()
	}
	if p.net != nil {
		if nerr := p.net.Teardown(); nerr != nil && err == nil {
			err = nerr
		}
		p.net = nil
	}
	if p.cg != nil {
		if lerr := p.cg.Leave(); lerr != nil && err == nil {
			err = lerr
		}
		p.cg = nil
	}
	if cerr := CleanupPod(p.VMID); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// joinCgroup moves the shim into the pod's sandbox cgroup before the VM's processes start, so
// that QEMU and virtiofsd are born in it (podcgroup). A pod that names its cgroup (CRI) fails
// without it, as runc would; a pod of the shim's own (ctr run) runs on with a warning.
func (p *Pod) joinCgroup(ctx context.Context, cgroupsPath string) error {
	cg, err := podcgroup.Join(p.Dir, cgroupsPath, p.VMID, os.Getpid())
	if err != nil {
		if cgroupsPath != "" {
			return err
		}
		log.G(ctx).WithError(err).Warn("the pod's VM runs in the shim's cgroup")
		return nil
	}
	p.cg = cg
	log.G(ctx).WithFields(log.Fields{"vm": p.VMID, "cgroup": cg.Path()}).Debug("shim joined the pod's cgroup")
	return nil
}
