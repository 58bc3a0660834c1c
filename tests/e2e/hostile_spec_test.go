//go:build e2e

package e2e

// The requests an HONEST shim sends for the hostile tests' pod: OCI specs shaped like those
// containerd's CRI makes and the shim turns into guest specs (shim/task create.go and
// spec.go guestSpec), under guest pull. They are built from the pod's declaration below, not
// from the policy, so that the honest pod passing the policy proves they agree.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

// hostileContainer is one container of the pod as its YAML declares it.
type hostileContainer struct {
	name    string
	args    []string // command
	env     []string // the pod's variables
	uid     uint32
	gid     uint32
	groups  []uint32 // additionalGids as containerd's CRI makes them: the primary gid and /etc/group's
	nnp     bool     // allowPrivilegeEscalation: false
	volumes []string // mount paths of volumes the host shares (a configMap's; an emptyDir would be the guest's)
	probe   []string // the exec liveness probe
}

var (
	hostileApp = hostileContainer{
		name: "app", args: []string{"sh", "-c", "echo app-ok; exec sleep 3600"},
		env: []string{"APP_TOKEN=" + hostileSecret}, uid: 1000, gid: 1000, groups: []uint32{1000}, nnp: true,
		volumes: []string{"/data"}, probe: []string{"cat", "/etc/hostname"},
	}
	hostileDebug = hostileContainer{
		name: "debug", args: []string{"sh", "-c", "exec sleep 3600"}, groups: []uint32{0},
		probe: []string{"sh", "-c", "id; cat /proc/1/environ"},
	}
)

// hostilePodYAML is the pod, its images named image.
func hostilePodYAML(image string) string {
	j := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: hostile
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  volumes:
  - name: data
    configMap:
      name: data
  containers:
  - name: app
    image: %[1]s
    command: %[2]s
    env:
    - name: APP_TOKEN
      value: %[3]s
    volumeMounts:
    - name: data
      mountPath: /data
    livenessProbe:
      exec:
        command: %[4]s
    securityContext:
      runAsUser: 1000
      runAsGroup: 1000
      allowPrivilegeEscalation: false
  - name: debug
    image: %[1]s
    command: %[5]s
    livenessProbe:
      exec:
        command: %[6]s
`, image, j(hostileApp.args), hostileSecret, j(hostileApp.probe), j(hostileDebug.args), j(hostileDebug.probe))
}

// hostileCaps is containerd's default capability set.
var hostileCaps = []string{
	"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
	"CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
}

var (
	hostileMasked = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap", "/proc/interrupts",
	}
	hostileReadonly = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// hostileReq is a CreateContainer request under construction.
type hostileReq struct {
	id       string
	spec     *specs.Spec
	storages []*api.Storage
	binds    map[string]int // bind mount destination -> n of its source, api.SharedVolume(id, n)
	// firstBind is the n of the first bind (0 as the shim makes them).
	firstBind int
}

func (r *hostileReq) msg() *api.CreateContainerRequest {
	b, err := json.Marshal(r.spec)
	if err != nil {
		panic(err)
	}
	return &api.CreateContainerRequest{ContainerId: r.id, OciSpec: b, Storages: r.storages}
}

// mount returns the spec's mount at dest.
func (r *hostileReq) mount(dest string) *specs.Mount {
	for i := range r.spec.Mounts {
		if r.spec.Mounts[i].Destination == dest {
			return &r.spec.Mounts[i]
		}
	}
	panic("no mount at " + dest)
}

// hostileBind is one bind mount CRI adds; the host places a file (content) or a directory
// (dir) in the share as its source.
type hostileBind struct {
	dest, content string
	dir, ro       bool
}

// runtimeMounts are the mounts containerd's CRI gives every container besides its binds.
func runtimeMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// ownNamespaces are the pid, ipc, uts and mount namespaces, each the container's own (CRI's
// network namespace path is the host's: the shim drops it).
func ownNamespaces() []specs.LinuxNamespace {
	return []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}}
}

// namespaces are a pod container's: it joins the sandbox container's ipc and uts, as CRI
// makes it (the shim names them api.SandboxNamespaceDir/<type>), once that container runs.
func (e *hostileEnv) namespaces() []specs.LinuxNamespace {
	out := ownNamespaces()
	for i := range out {
		if t := out[i].Type; e.sandboxJoined && (t == specs.IPCNamespace || t == specs.UTSNamespace) {
			out[i].Path = api.SandboxNamespaceDir + "/" + string(t)
		}
	}
	return out
}

// placeBinds adds binds to r's spec with sources in the share as the shim places them
// (<share>/<id>/mounts/<n>, api.SharedVolume(id, n) in the guest), and creates those sources.
func (e *hostileEnv) placeBinds(t *testing.T, r *hostileReq, binds []hostileBind) {
	t.Helper()
	for _, b := range binds {
		n := r.firstBind + len(r.binds)
		src := api.SharedVolume(r.id, n)
		host := e.hostPath(src)
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if b.dir {
			err = os.MkdirAll(host, 0o777)
		} else {
			err = os.WriteFile(host, []byte(b.content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		opts := []string{"rbind", "rprivate", "rw"}
		if b.ro {
			opts[2] = "ro"
		}
		r.spec.Mounts = append(r.spec.Mounts, specs.Mount{Destination: b.dest, Type: "bind", Source: src, Options: opts})
		r.binds[b.dest] = n
	}
}

// honest returns the CreateContainer request an honest shim sends under guest pull for the
// pod's container c as container id, and places its bind sources in the share.
func (e *hostileEnv) honest(t *testing.T, id string, c hostileContainer) *hostileReq {
	t.Helper()
	return e.honestAt(t, id, c, 0)
}

// honestAt is honest with the bind sources numbered from first (a request that reuses
// another container's sources in the share).
func (e *hostileEnv) honestAt(t *testing.T, id string, c hostileContainer, first int) *hostileReq {
	t.Helper()
	root := api.ContainerRootfs(id)
	env := append([]string{busyboximage.Path, "HOSTNAME=" + hostileHostname}, c.env...)
	r := &hostileReq{id: id, binds: map[string]int{}, firstBind: first, spec: &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User: specs.User{UID: c.uid, GID: c.gid, AdditionalGids: c.groups},
			Args: c.args, Env: env, Cwd: "/",
			Capabilities:    &specs.LinuxCapabilities{Bounding: hostileCaps, Effective: hostileCaps, Permitted: hostileCaps},
			NoNewPrivileges: c.nnp,
			OOMScoreAdj:     func(i int) *int { return &i }(1000),
		},
		Root:     &specs.Root{Path: root},
		Hostname: hostileHostname,
		Mounts:   runtimeMounts(),
		Annotations: map[string]string{
			"io.kubernetes.cri.container-type":    "container",
			"io.kubernetes.cri.container-name":    c.name,
			"io.kubernetes.cri.sandbox-id":        hostileSandboxID,
			"io.kubernetes.cri.sandbox-name":      "hostile",
			"io.kubernetes.cri.sandbox-namespace": "default",
			"io.kubernetes.cri.image-name":        e.guestRef,
			api.ImageDigestAnnotation:             e.digest,
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			CgroupsPath:   "/kubepods/besteffort/podhostile/" + id,
			Namespaces:    e.namespaces(),
			MaskedPaths:   hostileMasked,
			ReadonlyPaths: hostileReadonly,
		},
	}}
	var binds []hostileBind
	for _, v := range c.volumes {
		binds = append(binds, hostileBind{dest: v, dir: true})
	}
	binds = append(binds,
		hostileBind{dest: "/etc/hosts", content: "127.0.0.1 localhost\n"},
		hostileBind{dest: "/dev/termination-log"},
		hostileBind{dest: "/etc/hostname", content: hostileHostname + "\n"},
		hostileBind{dest: "/etc/resolv.conf", content: "nameserver " + e.subnet + ".1\n"},
		hostileBind{dest: "/dev/shm", dir: true},
	)
	e.placeBinds(t, r, binds)
	r.storages = []*api.Storage{{Driver: api.DriverGuestPull, Source: e.guestRef, MountPoint: root}}
	return r
}

// pause returns the request an honest shim sends for the pod's sandbox (pause) container
// under guest pull: the guest image's pause bundle, read-only, /pause as 65535, nothing else.
func (e *hostileEnv) pause(t *testing.T) *hostileReq {
	t.Helper()
	id, root := hostileSandboxID, api.ContainerRootfs(hostileSandboxID)
	r := &hostileReq{id: id, binds: map[string]int{}, spec: &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User: specs.User{UID: 65535, GID: 65535, AdditionalGids: []uint32{65535}},
			Args: []string{api.PauseCommand}, Cwd: "/",
			Capabilities:    &specs.LinuxCapabilities{},
			NoNewPrivileges: true,
			OOMScoreAdj:     func(i int) *int { return &i }(-998),
		},
		Root:     &specs.Root{Path: root, Readonly: true},
		Hostname: hostileHostname,
		Mounts:   runtimeMounts(),
		Annotations: map[string]string{
			"io.kubernetes.cri.container-type":    "sandbox",
			"io.kubernetes.cri.sandbox-id":        hostileSandboxID,
			"io.kubernetes.cri.sandbox-name":      "hostile",
			"io.kubernetes.cri.sandbox-namespace": "default",
		},
		Linux: &specs.Linux{
			Resources:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			CgroupsPath:   "/kubepods/besteffort/podhostile/" + id,
			Namespaces:    ownNamespaces(),
			MaskedPaths:   hostileMasked,
			ReadonlyPaths: hostileReadonly,
		},
	}}
	e.placeBinds(t, r, []hostileBind{
		{dest: "/dev/shm", dir: true, ro: true},
		{dest: "/etc/resolv.conf", content: "nameserver " + e.subnet + ".1\n", ro: true},
	})
	r.storages = []*api.Storage{{Driver: api.DriverPause, MountPoint: root}}
	return r
}

// probe is the exec an honest shim sends for container c's declared probe: the container's
// own identity (CRI's exec spec is the container's process with other args).
func (e *hostileEnv) probe(c hostileContainer) *api.Process {
	return &api.Process{
		Args: c.probe, Cwd: "/",
		Env: append([]string{busyboximage.Path, "HOSTNAME=" + hostileHostname}, c.env...),
		Uid: c.uid, Gid: c.gid, AdditionalGids: c.groups, NoNewPrivileges: c.nnp,
		Capabilities: hostileCaps,
	}
}

// plantRoot makes dir a root file system of the host's: busybox, and /bin/sh and /pause
// replaced by hostileScript.
func plantRoot(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(busyboximage.StaticBusybox)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"bin/busybox": bb, "bin/sh": []byte(hostileScript), "pause": []byte(hostileScript)}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// listArgs is what a container runs when the policy lets the host choose (allow-all): it
// shows what its /data volume is.
var listArgs = []string{"sh", "-c", "echo \"data: $(ls -A /data 2>&1 | tr '\\n' ' ')\"; " +
	"test -e /data/etc/veil/image.json && echo GUEST-ROOT-VISIBLE; echo listed; exec sleep 3600"}

// listing returns the "data:" line of a listArgs container's output.
func listing(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "data: "); ok {
			return strings.TrimSpace(s)
		}
	}
	return ""
}
