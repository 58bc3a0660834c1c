package genpolicy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy/policies"
)

// Settings describe what the runtime adds to every container beyond what the pod declares:
// the mounts, capabilities, masked paths and variables that containerd's CRI and Veil's shim
// put in the OCI spec. They are data, not code: veil-genpolicy reads them from a JSON file
// (--settings) on top of DefaultSettings.
type Settings struct {
	// Capabilities are the capabilities a container gets when its securityContext changes
	// nothing (containerd's default set).
	Capabilities []string `json:"capabilities"`
	// Mounts are the mounts every container gets (proc, dev, sysfs, /etc/hosts, ...), by
	// destination. Those the shim shares from the host (/etc/hosts, /dev/shm, ...) are
	// volumes ("volume": true); the others match their source against a pattern.
	Mounts map[string]policies.Mount `json:"mounts"`
	// Rlimits are the resource limits a container's process may set (process.rlimits),
	// copied into every entry, the sandbox's included. containerd's CRI sets none: it
	// drops the default RLIMIT_NOFILE (WithoutDefaultSecuritySettings) unless the runtime
	// has a base_runtime_spec, whose rlimits belong here.
	Rlimits []policies.Rlimit `json:"rlimits"`
	// ServiceAccountPath is where the service account token is mounted unless the pod sets
	// automountServiceAccountToken: false.
	ServiceAccountPath string `json:"service_account_path"`
	// EnvPatterns are regular expressions for the variables the runtime adds to every
	// container (HOSTNAME, the kubernetes service).
	EnvPatterns []string `json:"env_patterns"`
	// ServiceLinkEnvPatterns are those of the service links, added unless the pod sets
	// enableServiceLinks: false.
	ServiceLinkEnvPatterns []string `json:"service_link_env_patterns"`
	// MaskedPaths and ReadonlyPaths must be present in every container's spec.
	MaskedPaths   []string `json:"masked_paths"`
	ReadonlyPaths []string `json:"readonly_paths"`
	// SandboxImage is the image of the pod's sandbox (pause) container: containerd's
	// sandbox_image (pinned_images.sandbox). "" leaves the sandbox out of the policy, which
	// then refuses the pod on a runtime that creates one. Under guest pull it is not
	// resolved (the guest image's pause program runs instead): only "" matters then.
	SandboxImage string `json:"sandbox_image"`
	// SandboxMounts are the sandbox container's mounts, by destination; under guest pull
	// too.
	SandboxMounts map[string]policies.Mount `json:"sandbox_mounts"`
	// Sandbox, Network and CopyFile are copied to the policy's data as they are.
	Sandbox  policies.Sandbox  `json:"sandbox"`
	Network  policies.Network  `json:"network"`
	CopyFile policies.CopyFile `json:"copy_file"`
}

// DefaultSettings returns the settings for containerd's CRI and Veil's shim.
func DefaultSettings() *Settings {
	ro := func(typ, src string) policies.Mount {
		return policies.Mount{Type: typ, Source: src, Options: []string{"ro"}}
	}
	rw := func(typ, src string) policies.Mount { return policies.Mount{Type: typ, Source: src} }
	// The bind mounts are of files containerd's CRI keeps on the host (the sandbox's
	// /dev/shm, hosts, hostname and resolv.conf), which the shim shares: volumes.
	return &Settings{
		Capabilities: []string{
			"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
			"CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
			"CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
		},
		Mounts: map[string]policies.Mount{
			"/proc":            rw("proc", "^proc$"),
			"/dev":             rw("tmpfs", "^tmpfs$"),
			"/dev/pts":         rw("devpts", "^devpts$"),
			"/dev/mqueue":      rw("mqueue", "^mqueue$"),
			"/dev/shm":         volume(),
			"/sys":             ro("sysfs", "^sysfs$"),
			"/sys/fs/cgroup":   ro("cgroup", "^cgroup$"),
			"/etc/hosts":       volume(),
			"/etc/hostname":    volume(),
			"/etc/resolv.conf": volume(),
		},
		SandboxImage: "registry.k8s.io/pause:3.10",
		SandboxMounts: map[string]policies.Mount{
			"/proc":            rw("proc", "^proc$"),
			"/dev":             rw("tmpfs", "^tmpfs$"),
			"/dev/pts":         rw("devpts", "^devpts$"),
			"/dev/mqueue":      rw("mqueue", "^mqueue$"),
			"/sys":             ro("sysfs", "^sysfs$"),
			"/sys/fs/cgroup":   ro("cgroup", "^cgroup$"),
			"/dev/shm":         volume("ro"),
			"/etc/resolv.conf": volume("ro"),
		},
		Rlimits:            []policies.Rlimit{},
		ServiceAccountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
		EnvPatterns: []string{
			`^HOSTNAME=[A-Za-z0-9.-]*$`,
			`^KUBERNETES_(SERVICE_HOST|SERVICE_PORT|SERVICE_PORT_HTTPS|PORT|PORT_443_TCP|PORT_443_TCP_PROTO|PORT_443_TCP_PORT|PORT_443_TCP_ADDR)=[A-Za-z0-9:/._-]*$`,
		},
		ServiceLinkEnvPatterns: []string{
			`^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT|SERVICE_PORT_[A-Z0-9_]+|PORT|PORT_[0-9]+_(TCP|UDP|SCTP)|PORT_[0-9]+_(TCP|UDP|SCTP)_(PROTO|PORT|ADDR))=[A-Za-z0-9:/._-]*$`,
		},
		MaskedPaths: []string{
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
			"/proc/scsi", "/sys/devices/virtual/powercap",
		},
		ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		Sandbox:       policies.Sandbox{StorageDrivers: []string{api.DriverVirtioFS, api.DriverTmpfs, api.DriverBind}},
		Network:       policies.Network{InterfaceNames: []string{`^eth[0-9]+$`}},
		CopyFile:      policies.CopyFile{PathPrefixes: []string{"/run/veil/shared/"}},
	}
}

// removedSettings are the fields that settings no longer have, with what replaced them.
// ParseSettings refuses them by name rather than ignoring what they asked for.
var removedSettings = map[string]string{
	"volume_source": "volume mounts are now matched by identity (\"volume\": true in a mount: one of the " +
		"container's own volumes on the pod's share), not by a source pattern; delete it",
}

// ParseSettings reads settings as JSON over DefaultSettings: a field the JSON sets replaces
// the default, and an unknown field is an error. A field that was removed is an error that
// names it (removedSettings).
func ParseSettings(b []byte) (*Settings, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err == nil {
		for name, why := range removedSettings {
			if _, ok := fields[name]; ok {
				return nil, fmt.Errorf("genpolicy settings: %s was removed: %s", name, why)
			}
		}
	}
	s := DefaultSettings()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("genpolicy settings: %w", err)
	}
	return s, nil
}
