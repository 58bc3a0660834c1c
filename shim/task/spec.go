package task

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/pod"
)

// readSpec reads the bundle's OCI spec.
func readSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parse %s/config.json: %w: %w", bundle, err, errdefs.ErrInvalidArgument)
	}
	if spec.Process == nil || spec.Linux == nil {
		return nil, fmt.Errorf("%s/config.json has no process or linux section: %w", bundle, errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

// isBind reports whether an OCI mount is a bind mount (of a host path).
func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// guestSpec turns the host's OCI spec into the one the agent runs: the root filesystem and
// bind-mount sources become paths below the guest's view of the shared directory (but the
// mounts of inGuest, which guestEmptyDirs moved into the guest), and what only makes sense
// on the host (hooks, AppArmor, SELinux labels) is dropped.
func guestSpec(p *pod.Pod, cid, rootfs string, spec *specs.Spec, inGuest map[int]bool) ([]byte, []string, error) {
	var notes []string
	spec.Root = &specs.Root{Path: rootfs, Readonly: spec.Root != nil && spec.Root.Readonly}
	if spec.Hooks != nil {
		notes = append(notes, "OCI hooks dropped: they would run on the host's side of a VM")
		spec.Hooks = nil
	}
	spec.Process.ApparmorProfile = ""
	spec.Process.SelinuxLabel = ""
	spec.Linux.MountLabel = ""
	if dropped := dropNetSysctls(spec.Linux); len(dropped) > 0 {
		notes = append(notes, fmt.Sprintf("network sysctls %v dropped: the container shares the guest's "+
			"own network namespace (the pod's), where runc refuses them", dropped))
	}
	n := 0
	for i, m := range spec.Mounts {
		if !isBind(m) || !filepath.IsAbs(m.Source) || inGuest[i] {
			continue
		}
		ro := slices.Contains(m.Options, "ro")
		guest, err := p.ShareBind(cid, n, m.Source, ro)
		if err != nil {
			return nil, nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		n++
		spec.Mounts[i].Source = guest
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal guest spec: %w", err)
	}
	return data, notes, nil
}

// dropNetSysctls handles a container that joins the pod's network namespace by path: the
// path is the host's (made by CNI) and means nothing in the guest, where the container runs
// in the guest's own network namespace (the VM is the pod), so the namespace entry goes; and
// the net.* sysctls go too, since runc refuses them in a namespace it does not create.
// containerd's CRI sets net.ipv4.ip_unprivileged_port_start and net.ipv4.ping_group_range
// on every pod. A policy sees the spec the guest runs: no host path, no sysctls it cannot have.
func dropNetSysctls(l *specs.Linux) []string {
	joinsNet := false
	l.Namespaces = slices.DeleteFunc(l.Namespaces, func(ns specs.LinuxNamespace) bool {
		if ns.Type == specs.NetworkNamespace && ns.Path != "" {
			joinsNet = true
			return true
		}
		return false
	})
	var dropped []string
	for k := range l.Sysctl {
		if joinsNet && strings.HasPrefix(k, "net.") {
			dropped = append(dropped, k)
			delete(l.Sysctl, k)
		}
	}
	slices.Sort(dropped)
	return dropped
}

// shareSandboxNamespaces rewrites the namespace paths that containerd's CRI gave a
// container to join the pod's sandbox container (/proc/<its pid>/ns/ipc, as the shim reported
// the sandbox's guest pid) into api.SandboxNamespaceDir/<type>, which the agent resolves to its
// own sandbox container and a policy can allow without knowing pids. Other paths are left as
// they are: the agent refuses those that do not exist in the guest.
func shareSandboxNamespaces(l *specs.Linux, sandboxPid uint32) {
	if sandboxPid == 0 {
		return
	}
	prefix := fmt.Sprintf("/proc/%d/ns/", sandboxPid)
	for i := range l.Namespaces {
		ns := &l.Namespaces[i]
		if file, ok := strings.CutPrefix(ns.Path, prefix); ok && nsFiles[ns.Type] == file {
			ns.Path = api.SandboxNamespaceDir + "/" + string(ns.Type)
		}
	}
}

// nsFiles are the /proc/<pid>/ns entries of the namespaces a container may share with the
// sandbox container.
var nsFiles = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace: "pid", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts",
}

// agentProcess converts an exec's OCI process into the agent's Process.
func agentProcess(sp *specs.Process, stdin bool) *api.Process {
	ap := &api.Process{
		Args:            sp.Args,
		Env:             sp.Env,
		Cwd:             sp.Cwd,
		Uid:             sp.User.UID,
		Gid:             sp.User.GID,
		AdditionalGids:  sp.User.AdditionalGids,
		Terminal:        sp.Terminal,
		Stdin:           stdin,
		NoNewPrivileges: sp.NoNewPrivileges,
	}
	if sp.Capabilities != nil {
		ap.Capabilities = sp.Capabilities.Bounding
	}
	return ap
}

// agentResources converts OCI resources (Update) into the agent's.
func agentResources(r *specs.LinuxResources) *api.Resources {
	out := &api.Resources{}
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			out.MemoryLimitBytes = *m.Limit
		}
		if m.Swap != nil {
			out.MemorySwapBytes = *m.Swap
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil {
			out.CpuShares = *c.Shares
		}
		if c.Quota != nil {
			out.CpuQuota = *c.Quota
		}
		if c.Period != nil {
			out.CpuPeriod = *c.Period
		}
		out.CpusetCpus = c.Cpus
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		out.PidsLimit = *r.Pids.Limit
	}
	return out
}
