// Package policytest builds realistic agent requests for policy tests: OCI specs shaped like
// those that containerd's CRI and Veil's shim produce for a pod's container (default mounts,
// capabilities, masked paths, namespaces, annotations).
package policytest

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
)

// HostDir is where Spec's bind mounts come from on the host (containerd's CRI names host
// paths: the pod's volumes, its hosts and resolv.conf files); CreateContainer moves them onto
// the pod's share as the shim does.
const HostDir = "/var/lib/kubelet/pods/pod1"

// DefaultCaps is containerd's default capability set.
var DefaultCaps = []string{
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
	"CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
}

// Container describes the container a spec is made for.
type Container struct {
	Name        string
	ImageDigest string // the io.veil.image.digest annotation; "" for none
	Args        []string
	Env         []string
	Cwd         string // "" means "/"
	UID, GID    uint32
	Caps        []string // nil means DefaultCaps
	// Volumes are mounted at these destinations from the sandbox directory.
	Volumes []string
	// EmptyDirs are the pod's emptyDir volumes the container mounts: destination -> volume
	// name, from kubelet's directory of the volume (api.KubeletEmptyDir); Shim moves them into
	// the guest as the shim does for a confidential pod.
	EmptyDirs       map[string]string
	TTY             bool
	NoNewPrivileges bool
	ReadOnlyRoot    bool
	// NoServiceAccount leaves out the service account token mount.
	NoServiceAccount bool
	// SharedNamespaces are the namespaces the container joins from the pod's sandbox
	// container, as the shim writes them (api.SandboxNamespaceDir/<type>): containerd's CRI
	// joins "ipc" and "uts" for every pod container.
	SharedNamespaces []string
}

// Spec returns the OCI spec the runtime would send for c.
func Spec(c Container) *specs.Spec {
	caps := c.Caps
	if caps == nil {
		caps = DefaultCaps
	}
	cwd := c.Cwd
	if cwd == "" {
		cwd = "/"
	}
	ann := map[string]string{
		"io.kubernetes.cri.container-type": "container",
		"io.kubernetes.cri.container-name": c.Name,
		"io.kubernetes.cri.sandbox-id":     "sb1",
	}
	if c.ImageDigest != "" {
		ann[api.ImageDigestAnnotation] = c.ImageDigest
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: c.TTY,
			User:     specs.User{UID: c.UID, GID: c.GID},
			Args:     slices.Clone(c.Args),
			Env:      slices.Clone(c.Env),
			Cwd:      cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: c.NoNewPrivileges,
			OOMScoreAdj:     intPtr(1000),
		},
		Root:        &specs.Root{Path: "rootfs", Readonly: c.ReadOnlyRoot},
		Hostname:    "pod1",
		Mounts:      mounts(c),
		Annotations: ann,
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				CPU:     &specs.LinuxCPU{Shares: uint64Ptr(2)},
			},
			CgroupsPath: "/kubepods/besteffort/pod1/" + c.Name,
			Namespaces:  namespaces(c.SharedNamespaces),
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
				"/sys/firmware", "/sys/devices/virtual/powercap", "/proc/interrupts",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// namespaces are a container's pid, ipc, uts and mount namespaces, those in shared joined
// from the sandbox container.
func namespaces(shared []string) []specs.LinuxNamespace {
	var out []specs.LinuxNamespace
	for _, t := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace} {
		ns := specs.LinuxNamespace{Type: t}
		if slices.Contains(shared, string(t)) {
			ns.Path = api.SandboxNamespaceDir + "/" + string(t)
		}
		out = append(out, ns)
	}
	return out
}

func mounts(c Container) []specs.Mount {
	bind := func(dst, src string, ro bool) specs.Mount {
		opts := []string{"rbind", "rprivate", "rw"}
		if ro {
			opts = []string{"rbind", "rprivate", "ro"}
		}
		return specs.Mount{Destination: dst, Type: "bind", Source: HostDir + "/" + src, Options: opts}
	}
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		bind("/etc/hosts", "hosts", false),
		bind("/dev/termination-log", c.Name+"/termination-log", false),
		bind("/etc/hostname", "hostname", false),
		bind("/etc/resolv.conf", "resolv.conf", false),
		bind("/dev/shm", "shm", false),
	}
	if !c.NoServiceAccount {
		ms = append(ms, bind("/var/run/secrets/kubernetes.io/serviceaccount", "volumes/token", true))
	}
	for _, v := range c.Volumes {
		ms = append(ms, bind(v, "volumes"+v, false))
	}
	for _, dst := range slices.Sorted(maps.Keys(c.EmptyDirs)) {
		ms = append(ms, bind(dst, "volumes/"+api.KubeletEmptyDir+"/"+c.EmptyDirs[dst], false))
	}
	return ms
}

// emptyDirOf returns the volume name of a kubelet emptyDir source.
func emptyDirOf(src string) (string, bool) {
	_, name, ok := strings.Cut(src, "/"+api.KubeletEmptyDir+"/")
	return name, ok
}

// EmptyDirStorages returns the storages the shim sends with s (Shim's output) for its
// emptyDir volumes, all of the disk medium: one per volume, in the order of the mounts.
func EmptyDirStorages(s *specs.Spec) []*api.Storage {
	var out []*api.Storage
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		if name, ok := strings.CutPrefix(m.Source, api.EmptyDirDir+"/"); ok && !seen[name] {
			seen[name] = true
			out = append(out, &api.Storage{Driver: api.DriverEmptyDir, Source: name, MountPoint: api.EmptyDirPath(name)})
		}
	}
	return out
}

// JSON encodes a spec.
func JSON(s *specs.Spec) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a specs.Spec always encodes
	}
	return b
}

// Shim returns a copy of s as Veil's shim sends it for container id when the host shares its
// root: the root at api.SharedRootfs(id), the n-th bind mount's source at
// api.SharedVolume(id, n), but an emptyDir volume's at api.EmptyDirPath(name).
func Shim(id string, s *specs.Spec) *specs.Spec {
	var out specs.Spec
	if err := json.Unmarshal(JSON(s), &out); err != nil {
		panic(err) // JSON's output always decodes
	}
	out.Root.Path = api.SharedRootfs(id)
	n := 0
	for i, m := range out.Mounts {
		if name, ok := emptyDirOf(m.Source); ok && m.Type == "bind" {
			out.Mounts[i].Source = api.EmptyDirPath(name)
		} else if m.Type == "bind" {
			out.Mounts[i].Source = api.SharedVolume(id, n)
			n++
		}
	}
	return &out
}

// CreateContainer returns the request with which the shim creates container id from s (Shim):
// its root is shared from the host, so it carries no storage but its emptyDir volumes'.
func CreateContainer(id string, s *specs.Spec) *api.CreateContainerRequest {
	out := Shim(id, s)
	return Request(id, out, EmptyDirStorages(out)...)
}

// Request returns a CreateContainer request of container id with exactly spec s and storages.
func Request(id string, s *specs.Spec, storages ...*api.Storage) *api.CreateContainerRequest {
	return &api.CreateContainerRequest{ContainerId: id, OciSpec: JSON(s), Storages: storages}
}

// GuestPull returns the request with which the shim creates container id from s when the
// guest pulls ref: an image_guest_pull storage and root at api.ContainerRootfs(id), the bind
// mounts' sources on the share.
func GuestPull(id, ref string, s *specs.Spec) *api.CreateContainerRequest {
	out := Shim(id, s)
	out.Root.Path = api.ContainerRootfs(id)
	root := &api.Storage{Driver: api.DriverGuestPull, Source: ref, MountPoint: api.ContainerRootfs(id)}
	return Request(id, out, append([]*api.Storage{root}, EmptyDirStorages(out)...)...)
}

func intPtr(i int) *int { return &i }

func uint64Ptr(i uint64) *uint64 { return &i }

// Exec returns the request that runs args in container id, as the runtime sends it for a
// probe or `kubectl exec`: as the container's user (uid, with the gid equal to it), with its
// capabilities (nil: DefaultCaps) and no_new_privileges setting.
func Exec(id string, args, env []string, uid uint32) *api.ExecProcessRequest {
	return &api.ExecProcessRequest{ContainerId: id, ExecId: "exec-1",
		Process: &api.Process{Args: args, Env: env, Cwd: "/", Uid: uid, Gid: uid, Capabilities: DefaultCaps}}
}
