// Package policies holds the agent policies that Veil ships, embedded in the binary:
// AllowAll, the default when tee = "none", and the confidential baseline (BaselineRules), which
// allows only what a pod declared. The declaration is the baseline's data section, policy_data, whose
// shape is Data; Render appends it to the baseline rules (veil-genpolicy does this).
package policies

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/veil-runtime/veil/agent/api"
)

// AllowAll allows every request of the agent API.
//
//go:embed allow-all.rego
var AllowAll string

// BaselineRules is the confidential baseline's rules without their data section; they compile
// only with one (Render). Render(Data{}) is the baseline for a pod that declares nothing.
//
//go:embed baseline.rego
var BaselineRules string

// ContainerNameAnnotation is the annotation containerd's CRI sets to the container's name in
// the pod; when present the baseline judges a CreateContainer against that entry only.
const ContainerNameAnnotation = "io.kubernetes.cri.container-name"

// ObligationSealedMounts is the obligation of the baseline's CreateContainer decision that
// lists the mount destinations whose every regular file must be a sealed secret
// (Container.SealedMounts); the agent enforces it (agent/server).
const ObligationSealedMounts = "sealed_mounts"

// Data is the baseline's data section (policy_data): what the pod declared. Render writes
// Containers as an object keyed by name.
type Data struct {
	Containers []Container `json:"containers"`
	Sandbox    Sandbox     `json:"sandbox"`
	Network    Network     `json:"network"`
	CopyFile   CopyFile    `json:"copy_file"`
}

// Container is one container the pod may run.
type Container struct {
	// Name is the container's name in the pod (matched against ContainerNameAnnotation);
	// unique within the pod. Render makes it the entry's key.
	Name string `json:"-"`
	// Image is the reference as the pod wrote it (for people; not checked).
	Image string `json:"image"`
	// ImageDigest is the digest the image must have: "sha256:<hex>".
	ImageDigest string `json:"image_digest"`
	// Args is the exact process.args.
	Args []string `json:"args"`
	// Cwd is the exact process.cwd; "" means not checked.
	Cwd string `json:"cwd"`
	// Env lists the "NAME=value" entries allowed exactly; EnvPatterns are regular expressions
	// over "NAME=value" for values the pod cannot know in advance. Every variable of a
	// request must be allowed by one or the other.
	Env         []string `json:"env"`
	EnvPatterns []string `json:"env_patterns"`
	// SealedEnv names the variables that must carry a sealed secret (a value that starts
	// with "sealed.", which the agent unseals; docs/sealed-secrets.md): a host that sends
	// such a variable with any other value is refused, whatever Env and EnvPatterns allow.
	SealedEnv []string `json:"sealed_env"`
	// SealedMounts are mount destinations whose every regular file must be a sealed secret:
	// CreateContainer's decision hands them to the agent as the obligation ObligationSealedMounts,
	// and the agent refuses the container when the host put another file there.
	SealedMounts []string `json:"sealed_mounts"`
	// Mounts are the mounts allowed, by destination; every mount of the spec must match the
	// entry for its destination.
	Mounts map[string]Mount `json:"mounts"`
	// Security is the container's security context.
	Security Security `json:"security"`
	// Exec lists the commands (argv) that ExecProcess may run in the container.
	Exec [][]string `json:"exec"`
	// Stdin allows WriteStdin to the container's processes.
	Stdin bool `json:"stdin"`
	// GuestPull requires the root file system to be one the agent pulled itself: an
	// image_guest_pull storage mounted on root.path (pulled by the digest ImageDigest pins),
	// and no other storage at, below or above root.path. Then the host cannot pair the
	// pinned digest with a root file system of its own. The root must be mounted at
	// api.ContainerRootfs(container id), where the agent puts it.
	GuestPull bool `json:"guest_pull"`
	// PauseBundle requires the root file system to be the guest image's pause bundle (an
	// api.DriverPause storage at api.ContainerRootfs(container id)) and the process to be
	// api.PauseCommand: the pod's sandbox container under guest pull, so that no code of the
	// host's runs in the pod. ImageDigest is then not checked (the guest image's measurement
	// covers the bundle).
	PauseBundle bool `json:"pause_bundle"`
}

// Mount is what is allowed at one destination.
type Mount struct {
	// Type is the mount type required ("bind", "proc", ...).
	Type string `json:"type"`
	// Source is a regular expression the source must match (for a mount that is not a
	// Volume): "^proc$".
	Source string `json:"source"`
	// Volume requires the source to be one of the container's own volumes on the pod's
	// share, api.SharedVolume(container id, n) for some n, which the agent opens inside the
	// share without following a link the host made. Source is then not used.
	Volume bool `json:"volume"`
	// EmptyDir, when not "", requires the source to be the pod's emptyDir volume of that name
	// kept in the guest, api.EmptyDirPath(EmptyDir), and allows the container's
	// api.DriverEmptyDir storage of it (fstype api.EmptyDirMemory when EmptyDirMemory, ""
	// otherwise): a host that shares a directory of its own there instead is refused, so it
	// can neither read nor pre-seed the volume. Source and Volume are then not used.
	EmptyDir       string `json:"empty_dir"`
	EmptyDirMemory bool   `json:"empty_dir_memory"`
	// Options are options the mount must have ("ro"); it may have others.
	Options []string `json:"options"`
}

// Security is what a container may hold.
type Security struct {
	// Capabilities lists every capability allowed in any of the process's sets. Render
	// sorts it.
	Capabilities []string `json:"capabilities"`
	// NoNewPrivileges requires process.noNewPrivileges (and of every exec).
	NoNewPrivileges bool `json:"no_new_privileges"`
	// UID and GID, when not nil, are required of the process. Whatever they say, an exec
	// runs with the uid and gid its container was created with.
	UID *int64 `json:"uid"`
	GID *int64 `json:"gid"`
	// AdditionalGids are the supplementary groups the process may hold besides its own gid
	// (process.user.additionalGids, an exec's additional_gids): the pod's supplementalGroups
	// and fsGroup and the groups that the image's /etc/group gives the user.
	AdditionalGids []int64 `json:"additional_gids"`
	// Rlimits are the resource limits the process may set, each exactly.
	Rlimits []Rlimit `json:"rlimits"`
	// SeccompRequired requires a seccomp profile that denies by default (the pod asked for
	// RuntimeDefault or Localhost). Without it, the container may run without one. Any
	// profile that is present must not hand syscalls to a listener (SCMP_ACT_NOTIFY) nor set
	// flags other than SECCOMP_FILTER_FLAG_TSYNC and SECCOMP_FILTER_FLAG_LOG.
	SeccompRequired bool `json:"seccomp_required"`
	// NonRoot forbids uid 0.
	NonRoot bool `json:"non_root"`
	// ReadOnlyRoot requires root.readonly.
	ReadOnlyRoot bool `json:"readonly_root"`
	// MaskedPaths and ReadonlyPaths must all be present in the spec.
	MaskedPaths   []string `json:"masked_paths"`
	ReadonlyPaths []string `json:"readonly_paths"`
	// Sysctls lists the sysctl keys allowed.
	Sysctls []string `json:"sysctls"`
	// SharedNamespaces lists the namespaces ("ipc", "uts", "pid") the container may share
	// with the pod's sandbox container, by the path api.SandboxNamespaceDir/<type>.
	SharedNamespaces []string `json:"shared_namespaces"`
}

// Rlimit is one resource limit (process.rlimits).
type Rlimit struct {
	Type string `json:"type"` // "RLIMIT_NOFILE"
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

// Sandbox is what the sandbox-wide requests may do.
type Sandbox struct {
	// StorageDrivers lists the storage drivers CreateSandbox may use (the baseline allows only
	// the pod's virtio-fs share there; a container's storages follow from its entry's root).
	StorageDrivers []string `json:"storage_drivers"`
	// WithholdOutput denies reading stdout and stderr: the agent drains and discards them.
	WithholdOutput bool `json:"withhold_output"`
	// DecisionLog lets the host read the agent's decision log (ReadDecisionLog): a
	// debugging policy. The log holds no request content, but it tells the host what the pod
	// did and was refused, so the baseline denies it unless this is set.
	DecisionLog bool `json:"decision_log"`
}

// Network is what the network requests may change.
type Network struct {
	// InterfaceNames are regular expressions for the devices UpdateInterface, UpdateRoutes
	// and AddARPNeighbors may touch.
	InterfaceNames []string `json:"interface_names"`
	// ForwardPorts are the TCP ports on the guest's loopback that port forwarding (OpenPort)
	// may reach: the ports the pod's containers declare.
	ForwardPorts []int `json:"forward_ports"`
}

// CopyFile is where CopyFile may write.
type CopyFile struct {
	// PathPrefixes are the prefixes an allowed path starts with ("/run/veil/shared/").
	PathPrefixes []string `json:"path_prefixes"`
}

// Render returns the baseline with data appended as its policy_data: one self-contained
// module, ready to be the policy.rego of an initdata document. The data is written in Rego:
// JSON, except that the containers are an object keyed by name, and the lists whose use is
// membership (env, masked_paths, readonly_paths, sysctls, exec, storage_drivers, a mount's
// options, shared_namespaces, additional_gids, rlimits, forward_ports, sealed_env) are Rego sets, so the rules test them
// in one step; and each container gets env_pattern, the alternation of its env_patterns
// (anyPattern), which the fast path matches once per variable, and namespaces, the set of
// namespace objects of the common case (namespaceSet). Object keys are sorted, so the same data always gives the same text (and
// digest).
func Render(data Data) (string, error) {
	data = data.normalized()
	containers := make(map[string]Container, len(data.Containers))
	for i, c := range data.Containers {
		if c.Name == "" {
			return "", fmt.Errorf("policy_data: containers[%d]: no name", i)
		}
		if _, dup := containers[c.Name]; dup {
			return "", fmt.Errorf("policy_data: containers[%d]: name %q used twice", i, c.Name)
		}
		containers[c.Name] = c
	}
	b, err := json.Marshal(struct {
		Data
		Containers map[string]Container `json:"containers"`
	}{data, containers})
	if err != nil {
		return "", fmt.Errorf("encode policy_data: %w", err)
	}
	var tree any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return "", fmt.Errorf("encode policy_data: %w", err)
	}
	for _, c := range data.Containers {
		entry := tree.(map[string]any)["containers"].(map[string]any)[c.Name].(map[string]any)
		entry["env_pattern"] = anyPattern(c.EnvPatterns)
		entry["namespaces"] = namespaceSet(c.Security.SharedNamespaces)
	}
	var out strings.Builder
	out.WriteString(BaselineRules)
	out.WriteString("\n# --- Filled by veil-genpolicy: what the pod declared. ---\n\npolicy_data := ")
	writeRego(&out, tree, "", "")
	out.WriteString("\n")
	return out.String(), nil
}

// noMatch is a regular expression that matches no string.
const noMatch = `[^\x00-\x{10FFFF}]`

// anyPattern returns one regular expression that matches what any of patterns matches (the
// rules' regex.match finds a match anywhere, and so does an alternation of the patterns, each
// in its own group, where its flags stay). It is noMatch when there are none, or when one does
// not compile: a pattern that is not valid alone could become valid in the alternation.
func anyPattern(patterns []string) string {
	if len(patterns) == 0 {
		return noMatch
	}
	groups := make([]string, len(patterns))
	for i, p := range patterns {
		if _, err := regexp.Compile(p); err != nil {
			return noMatch
		}
		groups[i] = "(?:" + p + ")"
	}
	return strings.Join(groups, "|")
}

// setFields are the lists that Render writes as Rego sets.
var setFields = map[string]bool{
	"env": true, "masked_paths": true, "readonly_paths": true,
	"sysctls": true, "exec": true, "storage_drivers": true, "options": true,
	"shared_namespaces": true, "namespaces": true, "additional_gids": true, "rlimits": true,
	"forward_ports": true, "sealed_env": true,
}

// namespaceSet is an entry's namespaces as the spec of the common case writes them, for the
// fast path to compare in one step: the four required ones, those the entry shares joined by
// the sandbox path, the others the container's own.
func namespaceSet(shared []string) []any {
	var out []any
	for _, t := range []string{"ipc", "mount", "pid", "uts"} {
		if slices.Contains(shared, t) {
			out = append(out, map[string]any{"type": t, "path": api.SandboxNamespaceDir + "/" + t})
		} else {
			out = append(out, map[string]any{"type": t})
		}
	}
	return out
}

// writeRego writes v (decoded JSON) as a Rego term; key is the object key v is the value of.
func writeRego(b *strings.Builder, v any, key, indent string) {
	inner := indent + "  "
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, k := range slices.Sorted(maps.Keys(v)) {
			if i > 0 {
				b.WriteString(",\n")
			}
			b.WriteString(inner + quote(k) + ": ")
			writeRego(b, v[k], k, inner)
		}
		b.WriteString("\n" + indent + "}")
	case []any:
		open, close := "[", "]"
		if setFields[key] {
			open, close = "{", "}"
			if len(v) == 0 {
				b.WriteString("set()")
				return
			}
		}
		if len(v) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString(open + "\n")
		for i, e := range v {
			if i > 0 {
				b.WriteString(",\n")
			}
			b.WriteString(inner)
			writeRego(b, e, "", inner)
		}
		b.WriteString("\n" + indent + close)
	case string:
		b.WriteString(quote(v))
	case json.Number:
		b.WriteString(v.String())
	case bool:
		b.WriteString(strconv.FormatBool(v))
	default:
		b.WriteString("null")
	}
}

// quote writes s as a JSON string, which Rego reads the same way.
func quote(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(buf.String(), "\n")
}

// normalized returns a copy of d with every nil list made empty.
func (d Data) normalized() Data {
	d.Containers = append([]Container{}, d.Containers...)
	for i := range d.Containers {
		c := d.Containers[i]
		c.Args, c.Env, c.EnvPatterns = orEmpty(c.Args), orEmpty(c.Env), orEmpty(c.EnvPatterns)
		c.SealedEnv, c.SealedMounts = orEmpty(c.SealedEnv), orEmpty(c.SealedMounts)
		mounts := make(map[string]Mount, len(c.Mounts))
		for k, m := range c.Mounts {
			m.Options = orEmpty(m.Options)
			mounts[k] = m
		}
		c.Mounts = mounts
		c.Exec = append([][]string{}, c.Exec...)
		for j := range c.Exec {
			c.Exec[j] = orEmpty(c.Exec[j])
		}
		s := &c.Security
		s.Capabilities, s.MaskedPaths = slices.Sorted(slices.Values(s.Capabilities)), orEmpty(s.MaskedPaths)
		s.Capabilities = orEmpty(s.Capabilities)
		s.ReadonlyPaths, s.Sysctls = orEmpty(s.ReadonlyPaths), orEmpty(s.Sysctls)
		s.SharedNamespaces = orEmpty(s.SharedNamespaces)
		s.AdditionalGids, s.Rlimits = orEmpty(s.AdditionalGids), orEmpty(s.Rlimits)
		d.Containers[i] = c
	}
	d.Sandbox.StorageDrivers = orEmpty(d.Sandbox.StorageDrivers)
	d.Network.InterfaceNames = orEmpty(d.Network.InterfaceNames)
	d.Network.ForwardPorts = orEmpty(d.Network.ForwardPorts)
	d.CopyFile.PathPrefixes = orEmpty(d.CopyFile.PathPrefixes)
	return d
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
