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
# document (input.state) remembers which entry each container was created from, and the
# identity its process got: {"containers": {"<container id>": {"entry": "<name>", "uid": n,
# "gid": n, "additional_gids": [...], "no_new_privileges": b, "capabilities": [...]}}}. Exec,
# stdin and start requests are judged against that entry and identity. The agent commits a
# rule's state change only once it carried the request out (policy.Engine.Commit).
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

# The pod's share in the guest (api.SharedDir): the shim shares a container's root at
# <shared_dir>/<id>/rootfs and the source of its n-th bind mount at <shared_dir>/<id>/mounts/<n>.
shared_dir := "/run/veil/shared"

# Where the agent mounts the root file systems it provides (api.ContainersDir): a pulled image
# or the pause bundle at <containers_dir>/<id>/rootfs.
containers_dir := "/run/veil/containers"

# Where the agent makes the pod's emptyDir volumes (api.EmptyDirDir): volume <name> at
# <emptydir_dir>/<name>, from the container's storage of driver emptydir_driver
# (api.DriverEmptyDir) whose fstype is emptydir_memory (api.EmptyDirMemory) for the memory
# medium.
emptydir_dir := "/run/veil/emptydir"

emptydir_driver := "emptydir"

emptydir_memory := "tmpfs"

# The storage drivers of the agent API that these rules name: the pod's virtio-fs share
# (api.DriverVirtioFS), a root file system the agent pulls (api.DriverGuestPull) and the guest
# image's pause bundle (api.DriverPause).
virtiofs_driver := "virtiofs"

guest_pull_driver := "image_guest_pull"

pause_driver := "pause_bundle"

# The seccomp flags a profile may set; others (SECCOMP_FILTER_FLAG_SPEC_ALLOW turns a
# speculation mitigation off) are refused.
seccomp_flags := {"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"}

# Default actions that allow what no rule names: a required profile must not have them.
seccomp_allowing := {"SCMP_ACT_ALLOW", "SCMP_ACT_LOG"}

cap_sets := ["bounding", "effective", "permitted", "inheritable", "ambient"]

# --- Requests that carry no risk of their own --------------------------------------------

default CheckRequest := true

default VersionRequest := true

default GetGuestDetailsRequest := true

default DestroySandboxRequest := true

default StatsContainerRequest := true

default PauseContainerRequest := true

default ResumeContainerRequest := true

default UpdateContainerRequest := true

default SignalProcessRequest := true

default WaitProcessRequest := true

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

# env_ok(c, env): every variable is listed exactly, or matches one of the entry's patterns,
# and every variable the pod declared sealed carries a sealed value.
env_ok(c, env) if {
	every e in [e | some e in env; not e in c.env] {
		env_pattern_ok(c, e)
	}
	sealed_env_ok(c, env)
}

# The prefix of a sealed secret's value (kbs-client/sealed.Prefix), which the agent unseals.
sealed_prefix := "sealed."

# sealed_env_ok(c, env): no variable of c.sealed_env has a value that is not sealed (a host
# swapping a sealed secret for a plaintext of its choosing).
sealed_env_ok(c, env) if count(c.sealed_env) == 0

sealed_env_ok(c, env) if {
	count(c.sealed_env) > 0
	count(unsealed_env(c, env)) == 0
}

unsealed_env(c, env) := {name |
	some e in env
	name := split(e, "=")[0]
	name in c.sealed_env
	not startswith(e, concat("", [name, "=", sealed_prefix]))
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
} | {sprintf("environment variable %s must carry a sealed secret (%s...), not another value", [name, sealed_prefix]) |
	some name in unsealed_env(c, env)
}

# --- Sandbox -----------------------------------------------------------------------------

SetPolicyRequest := {"allow": false, "reason": "the confidential baseline does not allow replacing the policy"}

# The guest's clock decides which certificates are valid (the KBS's, the registry's): the host
# does not set it.
SetGuestTimeRequest := {"allow": false, "reason": "the confidential baseline does not let the host set the guest's clock"}

CreateSandboxRequest := decision(storage_v | dns_v)

# The sandbox mounts the pod's share, and nothing else.
storage_v := {sprintf("storage driver %q is not allowed", [s.driver]) |
	some s in input.request.storages
	not s.driver in policy_data.sandbox.storage_drivers
} | {sprintf("storage %q at %q: the sandbox mounts only the pod's virtio-fs share at %s", [s.driver, s.mount_point, shared_dir]) |
	some s in input.request.storages
	not sandbox_share(s)
}

sandbox_share(s) if {
	s.driver == virtiofs_driver
	s.mount_point == shared_dir
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

container_id := input.request.container_id

# created(name) allows the request and records the entry and the identity of the process.
# Its obligation "sealed_mounts" makes the agent refuse the container unless every file of
# those mounts is a sealed secret (the policy cannot see the files).
created(name) := {
	"allow": true,
	"obligations": {"sealed_mounts": policy_data.containers[name].sealed_mounts},
	"state": {"containers": {container_id: {
		"entry": name,
		"uid": object.get(user, "uid", 0),
		"gid": object.get(user, "gid", 0),
		"additional_gids": object.get(user, "additionalGids", []),
		"no_new_privileges": object.get(process, "noNewPrivileges", false),
		"capabilities": object.get(caps, "bounding", []),
	}}},
}

# fast_created is created(name) for a request the fast path admitted, whose process has a
# user with a uid and a gid and bounding capabilities (container_ok checked them), read
# without the helper rules.
fast_created(name, c, p) := {
	"allow": true,
	"obligations": {"sealed_mounts": c.sealed_mounts},
	"state": {"containers": {input.request.container_id: {
		"entry": name,
		"uid": p.user.uid,
		"gid": p.user.gid,
		"additional_gids": object.get(p.user, "additionalGids", []),
		"no_new_privileges": object.get(p, "noNewPrivileges", false),
		"capabilities": p.capabilities.bounding,
	}}},
}

# The fast path judges the entry the CRI annotation names; failing that, the request may
# match the named entry on the violations' terms, or any entry when it names none (the first
# by name when several match).
CreateContainerRequest := fast_created(name, c, s.process) if {
	s := input.request.oci_spec
	name := s.annotations["io.kubernetes.cri.container-name"] # name_annotation, a literal on the fast path
	c := policy_data.containers[name]
	container_ok(c)
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
} else := concat("; ", id_v) if {
	count(id_v) > 0
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

# A container id names one container at a time: re-creating a live id with another entry's
# spec would hand that entry's execs to the first container.
id_v := {sprintf("container id %q is already in use (created as %s)", [container_id, entry_of(container_id)]) |
	entry_of(container_id)
}

# The fast path: true only when container_v would find nothing. It may fail where
# container_v finds nothing (the request is then judged by container_v), never the reverse.
# It reads the spec straight from the input, not through spec_obj and the other helpers that
# make a missing part a violation: here a missing part just fails the fast path.
container_ok(c) if {
	not input.state.containers[container_id]
	s := input.request.oci_spec
	p := s.process
	l := s.linux
	is_object(p)
	is_object(l)
	not s.hooks
	image_ok(c, s)
	p.args == c.args
	c.cwd in {"", p.cwd}
	every e in {e | some e in p.env} - c.env { # env_ok; c.env_pattern is the alternation of c.env_patterns
		regex.match(c.env_pattern, e)
	}
	sealed_env_ok(c, p.env)
	every m in s.mounts {
		a := c.mounts[m.destination]
		a.type == m.type
		mount_source_ok(a, m.source)
		every o in a.options { # a set: see mount_allowed
			o in m.options
		}
	}
	k := p.capabilities # the common case: see caps_ok
	sort(k.bounding) == c.security.capabilities
	k.effective == k.bounding
	k.permitted == k.bounding
	count(k) == 3
	namespaces_ok(c)
	c.security.uid in {null, p.user.uid} # id_ok
	c.security.gid in {null, p.user.gid}
	every g in object.get(p.user, "additionalGids", []) { # not gid_refused
		gid_allowed(c, p.user.gid, g)
	}
	c.security.non_root in {false, p.user.uid != 0} # not root_refused
	c.security.no_new_privileges in {false, object.get(p, "noNewPrivileges", false)} # not nnp_missing
	c.security.readonly_root in {false, object.get(s, ["root", "readonly"], false)} # not root_rw
	every r in object.get(p, "rlimits", []) {
		r in c.security.rlimits
	}
	not p.apparmorProfile # labels_v
	not p.selinuxLabel
	not l.mountLabel
	every x in c.security.masked_paths {
		x in l.maskedPaths
	}
	every x in c.security.readonly_paths {
		x in l.readonlyPaths
	}
	not l.devices
	every d in object.get(l, ["resources", "devices"], []) { # device_cgroup_v
		d.allow == false
	}
	object.subset(c.security.sysctls, object.keys(object.get(l, "sysctl", {})))
	seccomp_ok(c, l)
	storages_ok(c)
	s.root.path == root_of(c)
}

# image_ok: the spec pins the entry's image; the pause bundle's root is the guest image's.
image_ok(c, _) if c.pause_bundle

image_ok(c, s) if {
	not c.pause_bundle
	s.annotations["io.veil.image.digest"] == c.image_digest # digest_annotation, a literal on the fast path
}

cwd_ok(c) if c.cwd == ""

cwd_ok(c) if process.cwd == c.cwd

id_ok(_, want) if want == null

id_ok(got, want) if got == want

# A supplementary group is the process's own gid or one the entry lists.
gid_allowed(_, gid, g) if g == gid

gid_allowed(c, _, g) if g in c.security.additional_gids

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

# A mount is allowed when the entry for its destination has its type, a source it allows and
# options it includes.
mount_allowed(c, m) if {
	a := c.mounts[m.destination]
	a.type == m.type
	mount_source_ok(a, object.get(m, "source", ""))
	# Sets: object.subset of an array counts a repeated option once per repetition.
	count(a.options - {o | some o in object.get(m, "options", [])}) == 0
}

# A volume's source is one of this container's own on the share, <shared_dir>/<id>/mounts/<n>,
# which the agent opens inside the share without following a link the host made; any other
# mount's source matches the entry's pattern.
mount_source_ok(a, src) if {
	a.volume == true
	a.empty_dir == ""
	startswith(src, volume_prefix)
	regex.match(`^[0-9]+$`, trim_prefix(src, volume_prefix))
}

volume_prefix := concat("", [shared_dir, "/", container_id, "/mounts/"])

mount_source_ok(a, src) if {
	a.volume == false
	a.empty_dir == ""
	regex.match(a.source, src)
}

# An emptyDir volume's source is the guest's directory of that volume, which only the agent
# makes (from an emptydir storage, emptydir_storage_ok): never a directory the host shares.
mount_source_ok(a, src) if {
	a.empty_dir != ""
	src == concat("/", [emptydir_dir, a.empty_dir])
}

# The violations of entry name: empty exactly when the request may create the container.
container_v(name) := v if {
	c := policy_data.containers[name]
	v := (((((id_v | spec_v) | image_v(c)) | args_v(c)) | env_v(c, env)) | mount_v(c)) | (((((capability_v(c) | namespace_v(c)) | user_v(c)) | linux_v(c)) | (root_v(c) | storages_v(c))) | (labels_v | seccomp_v(c)))
}

spec_v contains "oci_spec is missing" if not is_object(spec)

spec_v contains "oci_spec has no process" if not is_object(spec_obj.process)

spec_v contains "oci_spec has no linux section" if not is_object(spec_obj.linux)

spec_v contains "hooks are not allowed" if spec_obj.hooks

image_v(c) := {sprintf("image digest %q is not the policy's %q", [object.get(annotations, digest_annotation, ""), c.image_digest]) |
	not c.pause_bundle
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
} | {sprintf("supplementary group %v is not allowed", [g]) |
	some g in object.get(user, "additionalGids", [])
	not gid_allowed(c, object.get(user, "gid", 0), g)
} | {"the container runs as root and the pod requires a non-root user" |
	root_refused(c, object.get(user, "uid", 0))
} | {"no_new_privileges must be set" |
	nnp_missing(c)
} | {sprintf("rlimit %s (soft %v, hard %v) is not allowed", [r.type, r.soft, r.hard]) |
	some r in object.get(process, "rlimits", [])
	not r in c.security.rlimits
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
} | device_cgroup_v

# A device cgroup rule may only deny: an allowing one would let a container with CAP_MKNOD
# reach the guest's disks and memory.
device_cgroup_v := {sprintf("device cgroup rule allowing %s %v:%v (%s) is not allowed", [object.get(d, "type", "a"), object.get(d, "major", "*"), object.get(d, "minor", "*"), object.get(d, "access", "")]) |
	some d in object.get(linux, ["resources", "devices"], [])
	d.allow != false
}

# The guest has neither AppArmor nor SELinux: a label would mean nothing, so none may be set.
labels_v := {sprintf("%s %q is set: the guest has no such security module", [k, v]) |
	some k, v in {"process.apparmorProfile": object.get(process, "apparmorProfile", ""), "process.selinuxLabel": object.get(process, "selinuxLabel", ""), "linux.mountLabel": object.get(linux, "mountLabel", "")}
	v != ""
}

root_v(c) := {"the root file system must be read-only" | root_rw(c)}

# --- Seccomp -----------------------------------------------------------------------------
# A profile may be required (the pod asked for one); any profile must keep every syscall in
# the guest (no listener) and the speculation mitigations on.

seccomp_ok(c, l) if {
	not l.seccomp
	not c.security.seccomp_required
}

seccomp_ok(c, l) if {
	l.seccomp
	count(seccomp_v(c)) == 0
}

seccomp_v(c) := {"a seccomp profile is required (the pod's seccompProfile)" |
	c.security.seccomp_required
	not linux.seccomp
} | {sprintf("seccomp default action %s allows what no rule names; the pod requires a profile that denies", [linux.seccomp.defaultAction]) |
	c.security.seccomp_required
	linux.seccomp.defaultAction in seccomp_allowing
} | {"seccomp hands syscalls to a listener (SCMP_ACT_NOTIFY)" |
	seccomp_notifies
} | {"seccomp names a listener" |
	object.get(linux, ["seccomp", "listenerPath"], "") != ""
} | {sprintf("seccomp flag %s is not allowed", [f]) |
	some f in object.get(linux, ["seccomp", "flags"], [])
	not f in seccomp_flags
}

seccomp_notifies if linux.seccomp.defaultAction == "SCMP_ACT_NOTIFY"

seccomp_notifies if {
	some sc in object.get(linux, ["seccomp", "syscalls"], [])
	sc.action == "SCMP_ACT_NOTIFY"
}

# --- The root file system ----------------------------------------------------------------
# root_of(c) is where the container's root must be: the share's <id>/rootfs for a root the
# host shares, or <containers_dir>/<id>/rootfs for one the agent provides (a pulled image, the
# pause bundle). The request's storages must be exactly that root's (none for a shared root):
# the host cannot pair a pinned digest with a root of its own, mount anything over or under
# the root, nor choose where the agent puts a pulled image.

root_of(c) := agent_root if c.guest_pull

root_of(c) := agent_root if {
	not c.guest_pull
	c.pause_bundle
}

root_of(c) := shared_root if {
	not c.guest_pull
	not c.pause_bundle
}

agent_root := concat("/", [containers_dir, container_id, "rootfs"])

shared_root := concat("/", [shared_dir, container_id, "rootfs"])

root_driver(c) := guest_pull_driver if c.guest_pull

root_driver(c) := pause_driver if {
	not c.guest_pull
	c.pause_bundle
}

storages_ok(c) if {
	not root_driver(c)
	count(root_storages) == 0
	emptydirs_ok(c)
}

storages_ok(c) if {
	count(root_storages) == 1
	d := root_storages[0]
	d.driver == root_driver(c)
	d.mount_point == root_of(c)
	emptydirs_ok(c)
}

# The storages besides the emptyDir volumes': the root's, if any.
root_storages := [d | some d in input.request.storages; object.get(d, "driver", "") != emptydir_driver]

# Every emptydir storage is one of the container's emptyDir volumes, with its medium, at its
# own directory, without options.
emptydirs_ok(c) if {
	every d in input.request.storages {
		not_bad_emptydir(c, d)
	}
}

not_bad_emptydir(_, d) if object.get(d, "driver", "") != emptydir_driver

not_bad_emptydir(c, d) if emptydir_storage_ok(c, d)

emptydir_storage_ok(c, d) if {
	d.driver == emptydir_driver
	some a in c.mounts
	a.empty_dir != ""
	d.source == a.empty_dir
	d.mount_point == concat("/", [emptydir_dir, a.empty_dir])
	object.get(d, "fstype", "") == emptydir_fstype(a)
	count(object.get(d, "options", [])) == 0
}

emptydir_fstype(a) := emptydir_memory if a.empty_dir_memory

emptydir_fstype(a) := "" if not a.empty_dir_memory

emptydir_names(c) := sort({a.empty_dir | some a in c.mounts; a.empty_dir != ""})

root_path := object.get(spec_obj, ["root", "path"], "")

root_storage(c, d) if {
	d.driver == root_driver(c)
	d.mount_point == root_of(c)
}

storages_v(c) := {sprintf("the root file system %q must be an %s storage (the pod requires guest pull)", [root_path, guest_pull_driver]) |
	c.guest_pull
	not any_root_storage(c)
} | {sprintf("the root file system %q must be the guest's pause bundle", [root_path]) |
	not c.guest_pull
	c.pause_bundle
	not any_root_storage(c)
} | {sprintf("storage %q at %q is not allowed: %s", [object.get(d, "driver", ""), object.get(d, "mount_point", ""), extra_storage_reason(c)]) |
	some d in input.request.storages
	object.get(d, "driver", "") != emptydir_driver
	not root_storage(c, d)
} | {sprintf("emptydir storage %q (fstype %q, mount_point %q, options %v) is not one of the container's emptyDir volumes %v, each at %s/<name> with its medium's fstype and no options", [object.get(d, "source", ""), object.get(d, "fstype", ""), object.get(d, "mount_point", ""), object.get(d, "options", []), emptydir_names(c), emptydir_dir]) |
	some d in input.request.storages
	d.driver == emptydir_driver
	not emptydir_storage_ok(c, d)
} | {sprintf("the root file system's storage is given %d times", [n]) |
	n := count([d | some d in input.request.storages; root_storage(c, d)])
	n > 1
} | {sprintf("root.path %q is not %q", [root_path, root_of(c)]) |
	root_path != root_of(c)
}

any_root_storage(c) if {
	some d in input.request.storages
	root_storage(c, d)
}

extra_storage_reason(c) := "the root is shared from the host" if {
	not root_driver(c)
} else := sprintf("the container's only storage is its root (%s at %s)", [root_driver(c), root_of(c)])

StartContainerRequest := decision(known_container_v(input.request.container_id))

RemoveContainerRequest := {"allow": true, "state": {"containers": {input.request.container_id: null}}}

# --- Processes and stdio -----------------------------------------------------------------

exec_process := p if {
	p := input.request.process
	is_object(p)
} else := {}

# An exec runs a command its entry lists, as the identity its container was created with:
# the same uid and gid, groups and capabilities among the container's, no_new_privileges when
# the container has it or the entry requires it.
ExecProcessRequest := {"allow": true} if {
	st := input.state.containers[container_id]
	c := policy_data.containers[st.entry]
	p := input.request.process
	p.args in c.exec
	env_ok(c, p.env)
	exec_identity_ok(c, st, p)
} else := decision(exec_v)

# The fast path of the identity: exactly the container's (what the runtime sends for a probe or
# kubectl exec), or none of its groups and capabilities (the agent then gives the process the
# container's). It holds only where exec_security_v finds nothing: the container's
# capabilities were judged within the entry's at its creation, and its uid against the
# entry's and non_root.
exec_identity_ok(c, st, p) if {
	p.uid == st.uid
	p.gid == st.gid
	p.additional_gids in {[], st.additional_gids}
	p.capabilities in {[], st.capabilities}
	not exec_nnp_missing(c, st, p)
}

exec_nnp_missing(c, st, p) if {
	exec_nnp_required(c, st)
	not p.no_new_privileges
}

exec_v := known_container_v(container_id) if {
	not entry_of(container_id)
} else := v if {
	st := input.state.containers[container_id]
	c := policy_data.containers[st.entry]
	v := (exec_command_v(c) | env_v(c, object.get(exec_process, "env", []))) | exec_security_v(c, st)
}

exec_command_v(c) := {sprintf("exec of %v is not allowed in container %s", [object.get(exec_process, "args", []), entry_of(container_id)]) |
	not exec_process.args in c.exec
}

exec_security_v(c, st) := {sprintf("capability %s is not allowed", [cap]) |
	some cap in object.get(exec_process, "capabilities", [])
	not exec_cap_allowed(c, st, cap)
} | {sprintf("uid %v is not the policy's %v", [object.get(exec_process, "uid", 0), c.security.uid]) |
	c.security.uid != null
	not exec_process.uid == c.security.uid
} | {sprintf("uid %v is not the container's %v", [object.get(exec_process, "uid", 0), st.uid]) |
	object.get(exec_process, "uid", 0) != st.uid
} | {sprintf("gid %v is not the container's %v", [object.get(exec_process, "gid", 0), st.gid]) |
	object.get(exec_process, "gid", 0) != st.gid
} | {sprintf("supplementary group %v is not the container's", [g]) |
	some g in object.get(exec_process, "additional_gids", [])
	g != st.gid
	not g in st.additional_gids
} | {"no_new_privileges must be set" |
	exec_nnp_missing(c, st, exec_process)
} | {"the process runs as root and the pod requires a non-root user" |
	c.security.non_root
	object.get(exec_process, "uid", 0) == 0
}

exec_cap_allowed(c, st, cap) if {
	cap in c.security.capabilities
	cap in st.capabilities
}

exec_nnp_required(c, _) if c.security.no_new_privileges

exec_nnp_required(_, st) if st.no_new_privileges

WriteStreamRequest := decision(stdin_v)

stdin_v := known_container_v(input.request.container_id) if {
	not entry_of(input.request.container_id)
} else := v if {
	c := policy_data.containers[entry_of(input.request.container_id)]
	v := {sprintf("container %s does not declare stdin", [entry_of(input.request.container_id)]) | not c.stdin}
}

# Reading output denied means drained and withheld (see Decision.Withhold); so is listing
# processes, whose command lines are withheld and pids kept.
ReadStreamRequest := {"allow": false, "reason": "the policy withholds container output"} if {
	policy_data.sandbox.withhold_output
} else := true

ListProcessesRequest := {"allow": false, "reason": "the policy withholds container command lines"} if {
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

# --- Port forwarding ---------------------------------------------------------------------
# kubectl port-forward reaches the guest's loopback, where a server may listen that the pod's
# network does not expose: only the ports the pod declares (its containers' ports) may be
# opened. The reads and writes of an open connection are its data, like any network traffic.

OpenPortRequest := decision({sprintf("port %v is not one the pod declares (network.forward_ports)", [input.request.port]) |
	not input.request.port in policy_data.network.forward_ports
})

default WritePortRequest := true

default ReadPortRequest := true

default ClosePortRequest := true

# --- Debugging ---------------------------------------------------------------------------

# The decision log holds no request content, but it shows the host what the pod does and what
# it was refused: only a debugging policy (sandbox.decision_log, veil-genpolicy --decision-log)
# lets the host read it.
ReadDecisionLogRequest := true if {
	policy_data.sandbox.decision_log
} else := {"allow": false, "reason": "the policy does not let the host read the decision log (sandbox.decision_log is off)"}
