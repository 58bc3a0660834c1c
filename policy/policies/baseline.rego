# Veil's confidential baseline agent policy.
#
# The host is the adversary: it may ask for anything, and the agent does only what the pod
# declared. The pod's declaration is policy_data, which veil-genpolicy appends to this file
# (policies.Render): these rules do not compile without it. Every field of policy_data is
# always present (null for "not set"), since OPA type-checks the rules against it.
#
# Each rule is named after a request message type and returns either true, or
# {"allow": bool, "reason": string, "state": object}. A denial's reason lists every violation
# found, sorted, joined with "; ".
#
# Container checks come in two forms that agree: a fast path (*_ok) that short-circuits and
# formats nothing, taken by every request that matches its entry, and the violations (*_v),
# computed only to explain a denial or to judge a request the fast path does not settle
# (capability sets that differ from the entry's, extra namespaces).
#
# policy_data.containers is keyed by container name (names are unique in a pod). The state
# document (input.state) remembers which entry each container was created from:
# {"containers": {"<container id>": {"entry": "<name>"}}}. Exec, stdin and start requests are
# judged against that entry.
package agent_policy

# The OCI spec annotation that names the image manifest digest the agent must run. The agent
# pulls (or checks) the image by this digest, so pinning it here pins the image.
digest_annotation := "io.veil.image.digest"

# The container name that containerd's CRI puts in the spec; when present it picks the entry.
name_annotation := "io.kubernetes.cri.container-name"

# Namespaces a container must get for itself: without them it would share the agent's.
required_namespaces := {"pid", "ipc", "uts", "mount"}

# Where a spec names the sandbox container's namespaces (api.SandboxNamespaceDir).
sandbox_namespace_dir := "/run/veil/sandbox/ns"

cap_sets := ["bounding", "effective", "permitted", "inheritable", "ambient"]

# --- Requests that carry no risk of their own --------------------------------------------

default CheckRequest := true

default VersionRequest := true

default GetGuestDetailsRequest := true

default DestroySandboxRequest := true

default SetGuestTimeRequest := true

default StatsContainerRequest := true

default PauseContainerRequest := true

default ResumeContainerRequest := true

default UpdateContainerRequest := true

default SignalProcessRequest := true

default WaitProcessRequest := true

default ListProcessesRequest := true

default CloseStdinRequest := true

default TtyWinResizeRequest := true

default GetEventRequest := true

default ListInterfacesRequest := true

default ListRoutesRequest := true

# --- Helpers -----------------------------------------------------------------------------

decision(violations) := {"allow": true} if count(violations) == 0

decision(violations) := {"allow": false, "reason": concat("; ", violations)} if count(violations) > 0

entry_of(id) := input.state.containers[id].entry

# known_container_v(id) is empty when container id was created under this policy.
known_container_v(id) := {sprintf("container %q was not created under this policy", [id]) |
	not entry_of(id)
}

# env_ok(c, env): every variable is listed exactly, or matches one of the entry's patterns.
env_ok(c, env) if {
	every e in [e | some e in env; not e in c.env] {
		env_pattern_ok(c, e)
	}
}

env_pattern_ok(c, e) if {
	some p in c.env_patterns
	regex.match(p, e)
}

# The reason names the variable, never its value.
env_v(c, env) := {sprintf("environment variable %s is not allowed with this value", [split(e, "=")[0]]) |
	some e in env
	not e in c.env
	not env_pattern_ok(c, e)
}

# --- Sandbox -----------------------------------------------------------------------------

SetPolicyRequest := {"allow": false, "reason": "the confidential baseline does not allow replacing the policy"}

CreateSandboxRequest := decision(storage_v | dns_v)

storage_v := {sprintf("storage driver %q is not allowed", [s.driver]) |
	some s in input.request.storages
	not s.driver in policy_data.sandbox.storage_drivers
}

dns_v := {sprintf("dns line %q is not allowed", [line]) |
	some line in input.request.dns
	not regex.match(`^(nameserver [0-9A-Fa-f:.]+|search( [A-Za-z0-9.-]+)+|options( [A-Za-z0-9:_.-]+)+)$`, line)
}

CopyFileRequest := decision(copy_file_v)

copy_file_v contains sprintf("path %q contains \"..\"", [input.request.path]) if {
	".." in split(input.request.path, "/")
}

copy_file_v contains sprintf("path %q is outside the allowed paths", [input.request.path]) if {
	not copy_path_allowed(input.request.path)
}

copy_path_allowed(path) if {
	some prefix in policy_data.copy_file.path_prefixes
	startswith(path, prefix)
}

# --- Containers --------------------------------------------------------------------------

spec := input.request.oci_spec

# spec_obj, process, linux and user are never undefined, so that a missing part of the spec
# is a violation rather than a rule that silently does not apply.
spec_obj := spec if is_object(spec) else := {}

process := p if {
	p := spec_obj.process
	is_object(p)
} else := {}

linux := l if {
	l := spec_obj.linux
	is_object(l)
} else := {}

user := u if {
	u := process.user
	is_object(u)
} else := {}

annotations := a if {
	a := spec_obj.annotations
	is_object(a)
} else := {}

env := object.get(process, "env", [])

caps := object.get(process, "capabilities", {})

requested_name := annotations[name_annotation]

created(name) := {
	"allow": true,
	"state": {"containers": {input.request.container_id: {"entry": name}}},
}

# The fast path judges the entry the CRI annotation names; failing that, the request may
# match the named entry on the violations' terms, or any entry when it names none (the first
# by name when several match).
CreateContainerRequest := created(requested_name) if {
	container_ok(policy_data.containers[requested_name])
} else := created(requested_name) if {
	count(container_v(requested_name)) == 0
} else := created(min(unnamed_matches)) if {
	count(unnamed_matches) > 0
} else := {"allow": false, "reason": create_reason}

unnamed_matches := {name |
	not requested_name
	some name, _ in policy_data.containers
	count(container_v(name)) == 0
}

create_reason := "the policy declares no containers" if {
	count(policy_data.containers) == 0
} else := sprintf("no container named %q in the policy", [requested_name]) if {
	not policy_data.containers[requested_name]
} else := concat("; ", container_v(requested_name)) if {
	requested_name
} else := concat("; ", container_v(name)) if {
	count(policy_data.containers) == 1
	some name, _ in policy_data.containers
} else := sprintf("no container of the policy matches: %s", [concat(" | ", [sprintf("%s: %s", [name, concat("; ", container_v(name))]) |
	some name, _ in policy_data.containers
])])

# The fast path: true only when container_v would find nothing. It may fail where
# container_v finds nothing (the request is then judged by container_v), never the reverse.
# It reads the spec straight from the input, not through spec_obj and the other helpers that
# make a missing part a violation: here a missing part just fails the fast path.
container_ok(c) if {
	s := input.request.oci_spec
	p := s.process
	l := s.linux
	is_object(p)
	is_object(l)
	not s.hooks
	s.annotations["io.veil.image.digest"] == c.image_digest # digest_annotation
	p.args == c.args
	c.cwd in {"", p.cwd}
	every e in {e | some e in p.env} - c.env { # env_ok; c.env_pattern is the alternation of c.env_patterns
		regex.match(c.env_pattern, e)
	}
	every m in s.mounts {
		a := c.mounts[m.destination]
		a.type == m.type
		regex.match(a.source, m.source)
		count(a.options - {o | some o in m.options}) == 0 # sets: see mount_allowed
	}
	k := p.capabilities # the common case: see caps_ok
	sort(k.bounding) == c.security.capabilities
	k.effective == k.bounding
	k.permitted == k.bounding
	count(k) == 3
	namespaces_ok(c)
	c.security.uid in {null, p.user.uid} # id_ok
	c.security.gid in {null, p.user.gid}
	c.security.non_root in {false, p.user.uid != 0} # not root_refused
	c.security.no_new_privileges in {false, object.get(p, "noNewPrivileges", false)} # not nnp_missing
	c.security.readonly_root in {false, object.get(s, ["root", "readonly"], false)} # not root_rw
	count(c.security.masked_paths - {x | some x in l.maskedPaths}) == 0
	count(c.security.readonly_paths - {x | some x in l.readonlyPaths}) == 0
	not l.devices
	object.subset(c.security.sysctls, object.keys(object.get(l, "sysctl", {})))
	every d in input.request.storages {
		d.driver in policy_data.sandbox.storage_drivers
	}
	guest_pull_ok(c, object.get(s, ["root", "path"], ""))
}

cwd_ok(c) if c.cwd == ""

cwd_ok(c) if process.cwd == c.cwd

id_ok(_, want) if want == null

id_ok(got, want) if got == want

root_refused(c, uid) if {
	c.security.non_root
	uid == 0
}

nnp_missing(c) if {
	c.security.no_new_privileges
	not process.noNewPrivileges
}

root_rw(c) if {
	c.security.readonly_root
	not spec_obj.root.readonly
}

# A mount is allowed when the entry for its destination has its type, a source pattern it
# matches (the patterns genpolicy writes exclude ".." components) and options it includes.
mount_allowed(c, m) if {
	a := c.mounts[m.destination]
	a.type == m.type
	regex.match(a.source, m.source)
	# Sets: object.subset of an array counts a repeated option once per repetition.
	count(a.options - {o | some o in object.get(m, "options", [])}) == 0
}

# The violations of entry name: empty exactly when the request may create the container.
container_v(name) := v if {
	c := policy_data.containers[name]
	v := ((((spec_v | image_v(c)) | args_v(c)) | env_v(c, env)) | mount_v(c)) | ((((capability_v(c) | namespace_v(c)) | user_v(c)) | linux_v(c)) | ((root_v(c) | storage_v) | guest_pull_v(c)))
}

spec_v contains "oci_spec is missing" if not is_object(spec)

spec_v contains "oci_spec has no process" if not is_object(spec_obj.process)

spec_v contains "oci_spec has no linux section" if not is_object(spec_obj.linux)

spec_v contains "hooks are not allowed" if spec_obj.hooks

image_v(c) := {sprintf("image digest %q is not the policy's %q", [object.get(annotations, digest_annotation, ""), c.image_digest]) |
	not annotations[digest_annotation] == c.image_digest
}

args_v(c) := {sprintf("process args %v are not the policy's %v", [object.get(process, "args", []), c.args]) |
	not process.args == c.args
} | {sprintf("working directory %q is not the policy's %q", [object.get(process, "cwd", ""), c.cwd]) |
	not cwd_ok(c)
}

mount_v(c) := {sprintf("mount at %q is not allowed", [m.destination]) |
	some m in object.get(spec_obj, "mounts", [])
	not mount_allowed(c, m)
}

capability_v(c) := {sprintf("capability %s is not allowed", [cap]) |
	some kind in cap_sets
	some cap in object.get(caps, kind, [])
	not cap in c.security.capabilities
}

namespace_v(c) := {sprintf("namespace %s is missing: the container would share the guest's", [t]) |
	some t in required_namespaces
	not has_own_namespace(t)
} | {sprintf("namespace %s joins an existing one (%s)", [ns.type, ns.path]) |
	some ns in object.get(linux, "namespaces", [])
	object.get(ns, "path", "") != ""
	not sandbox_join(c, ns)
}

# sandbox_join(c, ns): ns joins the sandbox container's namespace of its type, which the entry
# shares (the agent resolves sandbox_namespace_dir/<type> to its own sandbox container).
sandbox_join(c, ns) if {
	ns.type in c.security.shared_namespaces
	ns.path == concat("/", [sandbox_namespace_dir, ns.type])
}

# The common case only: exactly the entry's namespaces (c.namespaces, which Render writes:
# the four required ones, those the entry shares joined by the sandbox path). Anything else
# is judged by namespace_v.
namespaces_ok(c) if {
	namespaces := input.request.oci_spec.linux.namespaces
	count(namespaces) == count(c.namespaces)
	{ns | some ns in namespaces} == c.namespaces
}

has_own_namespace(t) if {
	some ns in linux.namespaces
	ns.type == t
}

user_v(c) := {sprintf("uid %v is not the policy's %v", [object.get(user, "uid", 0), c.security.uid]) |
	not id_ok(object.get(user, "uid", 0), c.security.uid)
} | {sprintf("gid %v is not the policy's %v", [object.get(user, "gid", 0), c.security.gid]) |
	not id_ok(object.get(user, "gid", 0), c.security.gid)
} | {"the container runs as root and the pod requires a non-root user" |
	root_refused(c, object.get(user, "uid", 0))
} | {"no_new_privileges must be set" |
	nnp_missing(c)
}

linux_v(c) := {sprintf("masked path %s is missing", [p]) |
	some p in c.security.masked_paths
	not p in object.get(linux, "maskedPaths", [])
} | {sprintf("read-only path %s is missing", [p]) |
	some p in c.security.readonly_paths
	not p in object.get(linux, "readonlyPaths", [])
} | {sprintf("device %s is not allowed", [d.path]) |
	some d in object.get(linux, "devices", [])
} | {sprintf("sysctl %s is not allowed", [k]) |
	some k, _ in object.get(linux, "sysctl", {})
	not k in c.security.sysctls
}

root_v(c) := {"the root file system must be read-only" | root_rw(c)}

# --- Guest pull --------------------------------------------------------------------------
# An entry with guest_pull runs only from a root the agent pulled itself, by the digest image_v
# pins: an image_guest_pull storage on root.path, and no other storage at, below or above
# root.path to replace or shadow it. Else the host could pair the pin with a rootfs of its own.

guest_pull_ok(c, _) if not c.guest_pull

guest_pull_ok(c, root) if {
	c.guest_pull
	root_pulled(root)
	every d in input.request.storages {
		not root_shadow(d, root)
	}
}

root_pulled(root) if {
	root != ""
	some d in input.request.storages
	root_pull(d, root)
}

root_pull(d, root) if {
	d.driver == "image_guest_pull"
	d.mount_point == root
}

root_shadow(d, root) if { # at or below root
	not root_pull(d, root)
	startswith(concat("", [d.mount_point, "/"]), concat("", [root, "/"]))
}

root_shadow(d, root) if { # above root
	not root_pull(d, root)
	startswith(root, concat("", [d.mount_point, "/"]))
}

root_path := object.get(spec_obj, ["root", "path"], "")

guest_pull_v(c) := {sprintf("the root file system %q must be an image_guest_pull storage (the pod requires guest pull)", [root_path]) |
	c.guest_pull
	not root_pulled(root_path)
} | {sprintf("storage %q at %q overlaps the pulled root file system %q", [d.driver, d.mount_point, root_path]) |
	c.guest_pull
	some d in input.request.storages
	root_shadow(d, root_path)
}

StartContainerRequest := decision(known_container_v(input.request.container_id))

RemoveContainerRequest := {"allow": true, "state": {"containers": {input.request.container_id: null}}}

# --- Processes and stdio -----------------------------------------------------------------

exec_process := p if {
	p := input.request.process
	is_object(p)
} else := {}

ExecProcessRequest := {"allow": true} if {
	c := policy_data.containers[entry_of(input.request.container_id)]
	exec_process.args in c.exec
	env_ok(c, object.get(exec_process, "env", []))
	count(exec_security_v(c)) == 0
} else := decision(exec_v)

exec_v := known_container_v(input.request.container_id) if {
	not entry_of(input.request.container_id)
} else := v if {
	c := policy_data.containers[entry_of(input.request.container_id)]
	v := (exec_command_v(c) | env_v(c, object.get(exec_process, "env", []))) | exec_security_v(c)
}

exec_command_v(c) := {sprintf("exec of %v is not allowed in container %s", [object.get(exec_process, "args", []), entry_of(input.request.container_id)]) |
	not exec_process.args in c.exec
}

exec_security_v(c) := {sprintf("capability %s is not allowed", [cap]) |
	some cap in object.get(exec_process, "capabilities", [])
	not cap in c.security.capabilities
} | {sprintf("uid %v is not the policy's %v", [object.get(exec_process, "uid", 0), c.security.uid]) |
	c.security.uid != null
	not exec_process.uid == c.security.uid
} | {"the process runs as root and the pod requires a non-root user" |
	c.security.non_root
	object.get(exec_process, "uid", 0) == 0
}

WriteStreamRequest := decision(stdin_v)

stdin_v := known_container_v(input.request.container_id) if {
	not entry_of(input.request.container_id)
} else := v if {
	c := policy_data.containers[entry_of(input.request.container_id)]
	v := {sprintf("container %s does not declare stdin", [entry_of(input.request.container_id)]) | not c.stdin}
}

# Reading output denied means drained and withheld (see Decision.Withhold).
ReadStreamRequest := {"allow": false, "reason": "the policy withholds container output"} if {
	policy_data.sandbox.withhold_output
} else := true

# --- Network -----------------------------------------------------------------------------

UpdateInterfaceRequest := decision(interface_v)

interface_v contains "no interface" if not is_object(input.request.interface)

interface_v contains sprintf("interface %q is not one the policy allows", [input.request.interface.name]) if {
	not device_allowed(input.request.interface.name)
}

interface_v contains sprintf("address %s is a loopback address", [a.cidr]) if {
	some a in input.request.interface.addresses
	loopback(a.cidr)
}

UpdateRoutesRequest := decision(route_v)

route_v := {sprintf("route to %q via device %q is not allowed", [r.dest, r.device]) |
	some r in object.get(object.get(input.request, "routes", {}), "routes", [])
	not route_allowed(r)
}

route_allowed(r) if {
	device_allowed(r.device)
	not loopback(r.dest)
}

AddARPNeighborsRequest := decision({sprintf("ARP neighbour on device %q is not allowed", [n.device]) |
	some n in input.request.neighbors
	not device_allowed(n.device)
})

device_allowed(name) if {
	some p in policy_data.network.interface_names
	regex.match(p, name)
}

loopback(cidr) if net.cidr_contains("127.0.0.0/8", cidr)

loopback(cidr) if net.cidr_contains("::1/128", cidr)

# --- Debugging ---------------------------------------------------------------------------

# The decision log holds no request content, but it shows the host what the pod does and what
# it was refused: only a debugging policy (sandbox.decision_log, veil-genpolicy --decision-log)
# lets the host read it.
ReadDecisionLogRequest := true if {
	policy_data.sandbox.decision_log
} else := {"allow": false, "reason": "the policy does not let the host read the decision log (sandbox.decision_log is off)"}
