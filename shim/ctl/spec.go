// Package ctl is the logic of veil-ctl, the low-level tool that boots a VM and drives its agent
// directly (run, exec, ps, kill, raw calls). It is for debugging and tests; the containerd shim
// is the production path.
package ctl

import (
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecOptions are the parts of a container's OCI spec that veil-ctl's flags set.
type SpecOptions struct {
	Args             []string
	Env              []string // added to PATH and TERM
	Cwd              string
	Terminal         bool
	RootPath         string // guest path of the root filesystem
	ReadOnlyRoot     bool
	MemoryLimitBytes int64 // 0: no limit
	Hostname         string
}

// defaultCaps is runc's default capability set (what `runc spec` writes).
var defaultCaps = []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}

// maskedPaths and readonlyPaths are runc's defaults: kernel interfaces a container must not
// read or change.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
		"/proc/scsi", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// Spec returns an OCI runtime spec (JSON) like `runc spec` makes, adjusted by o.
func Spec(o SpecOptions) ([]byte, error) {
	if len(o.Args) == 0 {
		return nil, fmt.Errorf("no command to run")
	}
	cwd := o.Cwd
	if cwd == "" {
		cwd = "/"
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if o.Terminal {
		env = append(env, "TERM=xterm")
	}
	s := specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Terminal: o.Terminal,
			Args:     o.Args,
			Env:      append(env, o.Env...),
			Cwd:      cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: o.RootPath, Readonly: o.ReadOnlyRoot},
		Hostname: o.Hostname,
		Mounts:   defaultMounts(),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
			Resources:     resources(o.MemoryLimitBytes),
		},
	}
	return json.Marshal(&s)
}

func resources(memLimit int64) *specs.LinuxResources {
	r := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	if memLimit > 0 {
		// Swap equal to the limit: no swap on top of memory, so the limit is hard.
		r.Memory = &specs.LinuxMemory{Limit: &memLimit, Swap: &memLimit}
	}
	return r
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue",
			Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs",
			Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
			Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}
