package task

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/config"
	"github.com/veil-runtime/veil/shim/pod"
)

// agentTimeout bounds the agent calls of teardown paths, where the VM may be gone.
const agentTimeout = 5 * time.Second

// Create creates a task: the pod's VM first when this is the pod's first container, then
// the container in the guest. The container's process exists but has not started.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, fmt.Errorf("create %s from a checkpoint: %w", r.ID, errdefs.ErrNotImplemented)
	}
	if _, err := s.getContainer(r.ID); err == nil {
		return nil, fmt.Errorf("task %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, err
	}
	pr, err := s.podFor(ctx, r.ID, spec, r.Options)
	if err != nil {
		return nil, err
	}
	c := &container{id: r.ID, bundle: r.Bundle, pod: pr, execs: make(map[string]*process)}
	defer func() {
		if retErr != nil {
			s.discard(ctx, c)
		}
	}()
	image := s.setImageDigest(ctx, r.ID, spec)
	if c.storages = guestRootStorages(ctx, pr, r.ID, image, spec); c.storages != nil {
		c.rootfs = c.storages[0].MountPoint
	} else if c.rootfs, err = pr.pod.MountRootfs(r.ID, r.Rootfs, filepath.Join(r.Bundle, "rootfs")); err != nil {
		return nil, err
	}
	paths := stdioPaths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	c.init = newProcess(r.ID, "", paths)
	if err := s.createInGuest(ctx, c, spec); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.containers[r.ID] = c
	s.mu.Unlock()
	pid, _, _, _ := c.init.snapshot()
	s.send(&eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs, Pid: pid,
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskAPI.CreateTaskResponse{Pid: pid}, nil
}

// createInGuest opens the host's stdio and sends CreateContainer.
func (s *Service) createInGuest(ctx context.Context, c *container, spec *specs.Spec) error {
	if sb, err := s.getContainer(c.pod.pod.ID); err == nil && sb != c {
		pid, _, _, _ := sb.init.snapshot()
		shareSandboxNamespaces(spec.Linux, pid)
	}
	var inGuest map[int]bool
	if c.pod.pod.GuestEmptyDirs {
		volumes, moved, err := guestEmptyDirs(spec)
		if err != nil {
			return err
		}
		if len(volumes) > 0 {
			log.G(ctx).WithField("task", c.id).Info(emptyDirNote(volumes))
		}
		c.storages, inGuest = append(c.storages, volumes...), moved
	}
	data, notes, err := guestSpec(c.pod.pod, c.id, c.rootfs, spec, inGuest)
	if err != nil {
		return err
	}
	for _, n := range notes {
		log.G(ctx).WithField("task", c.id).Warn(n)
	}
	if c.init.io, err = openIO(ctx, namespaceOf(ctx), c.id, c.init.stdio); err != nil {
		return err
	}
	_, err = c.agent().CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: c.id, OciSpec: data, Stdin: c.init.stdio.Stdin != "", Storages: c.storages,
	})
	if err != nil {
		return fmt.Errorf("create container %s in the guest: %w", c.id, err)
	}
	c.init.setPID(s.guestPID(ctx, c, ""))
	return nil
}

// guestRootStorages returns the storage of a container's root file system when the guest
// provides it, or nil when it is shared from the host. Under the runtime's guest_pull setting
// a pod container's image is pulled in the guest (api.DriverGuestPull), and the pod's sandbox
// (pause) container runs the guest image's own pause program (api.DriverPause, its spec made
// the pause bundle's by pauseProcess), so that the host's code runs nowhere in the pod. A
// container without a known image keeps a root shared from the host, with a warning.
func guestRootStorages(ctx context.Context, pr *podRef, id, image string, spec *specs.Spec) []*api.Storage {
	switch {
	case !pr.guestPull:
		return nil
	case pod.IsSandboxContainer(id, spec.Annotations):
		pauseProcess(spec)
		return []*api.Storage{{Driver: api.DriverPause, MountPoint: api.ContainerRootfs(id)}}
	case image == "":
		log.G(ctx).WithField("task", id).Warn("guest_pull is on, but the container has no known image: its root file system is shared from the host")
		return nil
	}
	return []*api.Storage{{Driver: api.DriverGuestPull, Source: image, MountPoint: api.ContainerRootfs(id)}}
}

// pauseProcess makes spec's process the pause bundle's: api.PauseCommand alone, as api.PauseUID,
// without capabilities or variables, with no_new_privileges, on a read-only root. The image
// the host's CRI chose for the sandbox plays no part, so its digest goes too.
func pauseProcess(spec *specs.Spec) {
	p := spec.Process
	p.Args, p.Env, p.Cwd = []string{api.PauseCommand}, nil, "/"
	p.User = specs.User{UID: api.PauseUID, GID: api.PauseUID, AdditionalGids: []uint32{api.PauseUID}}
	p.Capabilities = &specs.LinuxCapabilities{}
	p.NoNewPrivileges = true
	if spec.Root == nil {
		spec.Root = &specs.Root{}
	}
	spec.Root.Readonly = true
	delete(spec.Annotations, api.ImageDigestAnnotation)
}

// guestPID looks up a process's pid in the guest (0 when the agent does not say).
func (s *Service) guestPID(ctx context.Context, c *container, execID string) uint32 {
	resp, err := c.agent().ListProcesses(ctx, &api.ListProcessesRequest{ContainerId: c.id})
	if err != nil {
		log.G(ctx).WithError(err).WithField("task", c.id).Debug("ListProcesses")
		return 0
	}
	for _, p := range resp.GetProcesses() {
		if p.GetExecId() == execID {
			return p.GetPid()
		}
	}
	return 0
}

// discard undoes a failed Create: the guest container, the host's stdio and the mounts; the
// VM too when no other task uses it.
func (s *Service) discard(ctx context.Context, c *container) {
	ctx = context.WithoutCancel(ctx)
	if c.init != nil && c.init.io != nil {
		c.init.io.close()
	}
	actx, cancel := c.pod.teardownCtx(ctx)
	_, _ = c.agent().RemoveContainer(actx, &api.RemoveContainerRequest{ContainerId: c.id})
	cancel()
	if err := c.pod.pod.RemoveContainer(c.id); err != nil {
		log.G(ctx).WithError(err).WithField("task", c.id).Warn("remove container mounts")
	}
	s.mu.Lock()
	idle := len(s.containers) == 0
	s.mu.Unlock()
	if idle {
		s.closePod(ctx)
	}
}

// podFor returns the pod that task id belongs to, booting it when id is its first task.
func (s *Service) podFor(ctx context.Context, id string, spec *specs.Spec, opts *anypb.Any) (*podRef, error) {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	sandboxID := pod.SandboxOf(id, spec.Annotations)
	s.mu.Lock()
	pr := s.pod
	s.mu.Unlock()
	if pr != nil {
		if pr.pod.ID != sandboxID {
			return nil, fmt.Errorf("task %s belongs to sandbox %s, but this shim serves sandbox %s: %w",
				id, sandboxID, pr.pod.ID, errdefs.ErrFailedPrecondition)
		}
		return pr, nil
	}
	if !pod.IsSandboxContainer(id, spec.Annotations) {
		return nil, fmt.Errorf("task %s: its sandbox %s is not running in this shim: %w", id, sandboxID, errdefs.ErrNotFound)
	}
	cfg, err := loadConfig(opts, spec.Annotations)
	if err != nil {
		return nil, err
	}
	// The VM grows by the pod's containers' limits (CRI's sandbox annotations).
	if cfg, err = cfg.WithPodSize(spec.Annotations); err != nil {
		return nil, err
	}
	if cfg, err = cfg.FitHost(config.HostMemMiB("/proc/meminfo"), runtime.NumCPU()); err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{"memory_mib": cfg.Hypervisor.MemoryMiB, "vcpus": cfg.Hypervisor.VCPUs}).Debug("sandbox VM size")
	initData, err := cfg.InitData(spec.Annotations)
	if err != nil {
		return nil, err
	}
	p, err := pod.Create(ctx, cfg, namespaceOf(ctx), sandboxID, cgroupsPath(spec), netnsPath(spec), initData)
	if err != nil {
		return nil, err
	}
	pr = s.watchPod(p)
	pr.guestPull = cfg.Runtime.GuestPull
	s.mu.Lock()
	s.pod = pr
	s.mu.Unlock()
	return pr, nil
}

// loadConfig reads the runtime handler's configuration (the runtime options' ConfigPath,
// $VEIL_CONFIG or the default path) and applies the pod's allowed annotations.
func loadConfig(opts *anypb.Any, annotations map[string]string) (*config.Config, error) {
	path, err := optionsConfigPath(opts)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(config.Resolve(path))
	if err != nil {
		return nil, err
	}
	return cfg.WithAnnotations(annotations)
}

// optionsConfigPath reads ConfigPath from the runtime options: containerd's CRI and ctr send
// runtimeoptions.v1.Options (with ConfigPath) to runtimes other than runc.
func optionsConfigPath(opts *anypb.Any) (string, error) {
	if opts == nil || opts.GetTypeUrl() == "" {
		return "", nil
	}
	v, err := typeurl.UnmarshalAny(opts)
	if err != nil {
		if errors.Is(err, typeurl.ErrNotFound) {
			return "", nil
		}
		return "", fmt.Errorf("runtime options %s: %w: %w", opts.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	switch o := v.(type) {
	case *runtimeoptions.Options:
		return o.GetConfigPath(), nil
	}
	return "", nil
}

// netnsPath is the network namespace a pod's sandbox container joins (CRI's, made by CNI),
// or "" when it makes its own or has none (a plain ctr run).
func netnsPath(spec *specs.Spec) string {
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// cgroupsPath is the sandbox container's cgroup (CRI's, from the pod's cgroup_parent), or ""
// when it names none (a plain ctr run).
func cgroupsPath(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	return spec.Linux.CgroupsPath
}

// namespaceOf is the containerd namespace of a request ("default" when it has none).
func namespaceOf(ctx context.Context) string {
	if ns, ok := namespaces.Namespace(ctx); ok {
		return ns
	}
	return namespaces.Default
}
