//go:build e2e

package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/policy/policytest"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// policyCycles is the number of CreateContainer (and of ExecProcess) round trips timed.
const policyCycles = 30

// sharedTag is the virtio-fs tag of the pod's shared directory, mounted at api.SharedDir by
// CreateSandbox, as the shim does; it holds each container's root and volumes where the shim
// puts them (podLayout).
const sharedTag = api.ShareTag

// policyPod is a three-container pod as a user would write it: the policy veil-genpolicy makes
// for it (with the sandbox entry, the service account token and the service links) is what
// the guest enforces. Its images resolve to busybox programs (benchResolver).
const policyPod = `apiVersion: v1
kind: Pod
metadata: {name: shop}
spec:
  containers:
  - name: web
    image: registry.example/web:1
    env:
    - {name: APP_MODE, value: production}
    - {name: LISTEN, value: ":8080"}
    - {name: LOG_LEVEL, value: info}
    - {name: DB_HOST, value: db.shop.svc}
    - {name: DB_PORT, value: "5432"}
    - {name: CACHE_DIR, value: /cache}
    - {name: CONFIG_DIR, value: /config}
    - {name: DATA_DIR, value: /data}
    - {name: WORKERS, value: "4"}
    - {name: FEATURE_FLAGS, value: "search,checkout"}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: cache, mountPath: /cache}
    - {name: config, mountPath: /config, readOnly: true}
    readinessProbe: {exec: {command: ["/bin/cat", "/etc/hostname"]}}
    livenessProbe: {exec: {command: ["/bin/true"]}}
  - name: proxy
    image: registry.example/proxy:2
    env:
    - {name: UPSTREAM, value: "127.0.0.1:8080"}
    - {name: LISTEN, value: ":8443"}
    readinessProbe: {exec: {command: ["/bin/true"]}}
  - name: metrics
    image: registry.example/metrics:3
    volumeMounts:
    - {name: data, mountPath: /data, readOnly: true}
  volumes:
  - {name: data, configMap: {name: data}}
  - {name: cache, configMap: {name: cache}}
  - {name: config, configMap: {name: config}}
`

const benchPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// benchResolver stands in for the registry: every image is the busybox root filesystem.
type benchResolver struct{}

func (benchResolver) Resolve(_ context.Context, ref string) (*genpolicy.Image, error) {
	images := map[string]*genpolicy.Image{
		"registry.example/web:1":     {Cmd: []string{"/bin/sleep", "3600"}, Env: []string{benchPath}, WorkingDir: "/", User: "1000"},
		"registry.example/proxy:2":   {Cmd: []string{"/bin/sleep", "3600"}, Env: []string{benchPath}, User: "1000"},
		"registry.example/metrics:3": {Cmd: []string{"/bin/sleep", "3600"}, Env: []string{benchPath}, User: "1000"},
		"registry.example/pause:3":   {Entrypoint: []string{"/bin/sleep"}, Cmd: []string{"3600"}, Env: []string{benchPath}},
	}
	img, ok := images[ref]
	if !ok {
		return nil, fmt.Errorf("no image %s", ref)
	}
	cp := *img
	cp.Digest = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(ref)))
	return &cp, nil
}

// BenchmarkPolicyShare boots a VM whose initdata policy is the confidential baseline that
// veil-genpolicy makes for policyPod (with the decision log on), creates the pod's sandbox
// container, then times policyCycles CreateContainer round trips of the pod's "web" container
// (each removed again) and policyCycles ExecProcess round trips of its readiness probe. The
// decision log gives the policy's time for each of those requests, measured in the guest.
func BenchmarkPolicyShare(b *testing.B) {
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = "registry.example/pause:3"
	res, err := genpolicy.Generate(context.Background(), []byte(policyPod),
		genpolicy.Options{Resolver: benchResolver{}, Settings: settings, DecisionLog: true})
	if err != nil {
		b.Fatal(err)
	}
	w := res.Workloads[0]
	entries := map[string]policies.Container{}
	for _, c := range w.Data.Containers {
		entries[c.Name] = c
	}
	web, pause := entries["web"], entries[genpolicy.SandboxEntry]
	b.Logf("policy: %d entries, %d bytes of Rego; web: %d variables, %d patterns, %d mounts, %d exec",
		len(w.Data.Containers), len(w.Policy), len(web.Env), len(web.EnvPatterns), len(web.Mounts), len(web.Exec))

	shared := filepath.Join(b.TempDir(), "shared")
	rootfs := filepath.Join(b.TempDir(), "rootfs")
	if err := busyboxRootFS(rootfs); err != nil {
		b.Fatal(err)
	}
	webSpec := func(id string) *specs.Spec { return containerSpec(web, id) }
	podSpecs := map[string]*specs.Spec{"sb1": sandboxSpec(pause, settings), "web": webSpec("web")}
	for i := 0; i < policyCycles; i++ {
		id := fmt.Sprintf("web-%d", i)
		podSpecs[id] = webSpec(id)
	}
	if err := podLayout(b, shared, rootfs, podSpecs); err != nil {
		b.Fatal(err)
	}
	c, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	sb, err := sandbox.Boot(c, sandbox.Options{ID: fmt.Sprintf("bench-policy-%d", os.Getpid()),
		ImageDir: imageDir(b), InitData: w.InitData, SharedDirs: []hypervisor.SharedDir{{Tag: sharedTag, HostPath: shared}}})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close(context.Background())
	b.Logf("accelerator: %s", qemuAccel(sb.VM.PID()))
	fail := func(format string, args ...any) {
		b.Helper()
		b.Logf("guest console:\n%s", sandbox.ConsoleTail(sb.VM.ConsoleLog(), 40))
		b.Fatalf(format, args...)
	}
	_, err = sb.Agent.CreateSandbox(c, &api.CreateSandboxRequest{SandboxId: "sb1", Hostname: "shop",
		Storages: []*api.Storage{{Driver: api.DriverVirtioFS, Source: sharedTag, MountPoint: api.SharedDir}}})
	if err != nil {
		fail("CreateSandbox: %v", err)
	}
	if _, err := sb.Agent.CreateContainer(c, createRequest("sb1", sandboxSpec(pause, settings))); err != nil {
		fail("create the sandbox container: %v", err)
	}
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "sb1"}); err != nil {
		fail("start the sandbox container: %v", err)
	}

	b.Logf("web's spec: %d variables, %d mounts", len(webSpec("web").Process.Env), len(webSpec("web").Mounts))
	var createRT, execRT []time.Duration
	for i := 0; i < policyCycles; i++ {
		id := fmt.Sprintf("web-%d", i)
		req := createRequest(id, webSpec(id))
		start := time.Now()
		if _, err := sb.Agent.CreateContainer(c, req); err != nil {
			fail("CreateContainer %s: %v", id, err)
		}
		createRT = append(createRT, time.Since(start))
		if _, err := sb.Agent.RemoveContainer(c, &api.RemoveContainerRequest{ContainerId: id}); err != nil {
			fail("RemoveContainer %s: %v", id, err)
		}
	}
	// A running web container, and its readiness probe exec'd as the kubelet does.
	if _, err := sb.Agent.CreateContainer(c, createRequest("web", webSpec("web"))); err != nil {
		fail("CreateContainer web: %v", err)
	}
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "web"}); err != nil {
		fail("StartContainer web: %v", err)
	}
	probe := &api.Process{Args: web.Exec[0], Env: webSpec("web").Process.Env, Cwd: "/",
		Uid: uint32(*web.Security.UID), Gid: uint32(*web.Security.GID), Capabilities: web.Security.Capabilities}
	execReq := func(execID string) *api.ExecProcessRequest {
		return &api.ExecProcessRequest{ContainerId: "web", ExecId: execID, Process: probe}
	}
	for i := 0; i < policyCycles; i++ {
		execID := fmt.Sprintf("probe-%d", i)
		start := time.Now()
		if _, err := sb.Agent.ExecProcess(c, execReq(execID)); err != nil {
			fail("ExecProcess %s: %v", execID, err)
		}
		execRT = append(execRT, time.Since(start))
		if wr, err := sb.Agent.WaitProcess(c, &api.WaitProcessRequest{ContainerId: "web", ExecId: execID}); err != nil || wr.GetStatus() != 0 {
			fail("WaitProcess %s: %v, status %d", execID, err, wr.GetStatus())
		}
	}

	createPol, execPol := decisionTimes(b, sb)
	report(b, "create", createRT, createPol)
	report(b, "exec", execRT, execPol)

	// The same decisions on the host, natively, for scale.
	e, err := policy.New(w.Policy)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(hostDecision(b, e, "CreateContainer", createRequest("web", webSpec("web"))), "create-policy-host-p50-µs")
	if d, err := e.Decide(context.Background(), "CreateContainer", createRequest("web", webSpec("web"))); !d.Allow {
		b.Fatalf("host CreateContainer: %s %v", d.Reason, err) // the exec below needs web created
	}
	b.ReportMetric(hostDecision(b, e, "ExecProcess", execReq("probe")), "exec-policy-host-p50-µs")
}

// hostDecision returns the p50 of policyCycles decisions of req by e, in µs (judged, not
// committed: the state stays as it is).
func hostDecision(b *testing.B, e *policy.Engine, method string, req proto.Message) float64 {
	var ds []time.Duration
	for i := 0; i < policyCycles; i++ {
		start := time.Now()
		if d, err := e.Judge(context.Background(), method, req); !d.Allow {
			b.Fatalf("host %s: %s %v", method, d.Reason, err)
		}
		ds = append(ds, time.Since(start))
	}
	return float64(pct(ds, 50).Nanoseconds()) / 1e3
}

// decisionTimes reads the agent's decision log and returns the policy's time for each allowed
// CreateContainer of a web-<n> container and each allowed ExecProcess in container web.
func decisionTimes(b *testing.B, sb *sandbox.Sandbox) (create, exec []time.Duration) {
	r, err := sb.Agent.ReadDecisionLog(context.Background(), &api.ReadDecisionLogRequest{})
	if err != nil {
		b.Fatalf("ReadDecisionLog: %v", err)
	}
	byMethod := map[string][]time.Duration{}
	for _, line := range bytes.Split(bytes.TrimSuffix(r.GetData(), []byte("\n")), []byte("\n")) {
		var e policy.LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			b.Fatalf("decision log line %q: %v", line, err)
		}
		d := time.Duration(e.DurationNS)
		byMethod[e.Method] = append(byMethod[e.Method], d)
		switch {
		case !e.Allow:
			b.Fatalf("a request was denied: %+v", e)
		case e.Method == "CreateContainer" && strings.HasPrefix(e.ContainerID, "web-"):
			create = append(create, d)
		case e.Method == "ExecProcess" && e.ContainerID == "web":
			exec = append(exec, d)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(byMethod)) {
		b.Logf("guest decisions %-16s n=%-3d p50 %v", m, len(byMethod[m]), pct(byMethod[m], 50))
	}
	if len(create) != policyCycles || len(exec) != policyCycles {
		b.Fatalf("decision log: %d CreateContainer and %d ExecProcess decisions (%d lines dropped), want %d each",
			len(create), len(exec), r.GetDropped(), policyCycles)
	}
	return create, exec
}

// report gives the round trip's and the policy's p50 and p99 and the policy's share of the
// round trip at p50. With policyCycles samples, p99 is the slowest.
func report(b *testing.B, what string, roundTrip, pol []time.Duration) {
	rt50, pol50 := pct(roundTrip, 50), pct(pol, 50)
	b.ReportMetric(float64(rt50.Microseconds())/1e3, what+"-rt-p50-ms")
	b.ReportMetric(float64(pct(roundTrip, 99).Microseconds())/1e3, what+"-rt-p99-ms")
	b.ReportMetric(float64(pol50.Nanoseconds())/1e3, what+"-policy-p50-µs")
	b.ReportMetric(float64(pct(pol, 99).Nanoseconds())/1e3, what+"-policy-p99-µs")
	b.ReportMetric(100*pol50.Seconds()/rt50.Seconds(), what+"-policy-share-%")
}

// pct returns the p-th percentile of ds (nearest rank below).
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*p/100]
}

// containerSpec is the OCI spec containerd's CRI and the shim send for entry e as container
// id: the entry's process, the runtime's variables (one of them a service link), the pod's
// volumes and the sandbox's namespaces; the root is the rootfs storage of createRequest.
func containerSpec(e policies.Container, id string) *specs.Spec {
	var vols []string
	for dst, m := range e.Mounts {
		if m.Type == "bind" && !strings.HasPrefix(dst, "/etc/") && !strings.HasPrefix(dst, "/dev/") &&
			!strings.HasPrefix(dst, "/var/run/secrets/") {
			vols = append(vols, dst)
		}
	}
	slices.Sort(vols)
	env := append(slices.Clone(e.Env), "POD_IP=10.88.0.7", "HOSTNAME=shop",
		"KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443", "DB_SERVICE_PORT=5432")
	s := policytest.Spec(policytest.Container{
		Name: e.Name, ImageDigest: e.ImageDigest, Args: e.Args, Cwd: e.Cwd, Env: env,
		UID: uint32(*e.Security.UID), GID: uint32(*e.Security.GID), Caps: e.Security.Capabilities, Volumes: vols,
		SharedNamespaces: e.Security.SharedNamespaces,
	})
	for i, m := range s.Mounts { // a readOnly volume mount
		if m.Type == "bind" && slices.Contains(e.Mounts[m.Destination].Options, "ro") {
			s.Mounts[i].Options = []string{"rbind", "rprivate", "ro"}
		}
	}
	return policytest.Shim(id, s)
}

// sandboxSpec is the spec of the pod's sandbox (pause) container: the sandbox mounts only,
// read-only binds and root, no container name.
func sandboxSpec(e policies.Container, st *genpolicy.Settings) *specs.Spec {
	s := policytest.Spec(policytest.Container{Name: "sandbox", ImageDigest: e.ImageDigest, Args: e.Args,
		Env: e.Env, Caps: e.Security.Capabilities, ReadOnlyRoot: true, NoServiceAccount: true, NoNewPrivileges: true})
	s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { _, ok := st.SandboxMounts[m.Destination]; return !ok })
	for i, m := range s.Mounts {
		if m.Type == "bind" {
			s.Mounts[i].Options = []string{"rbind", "rprivate", "ro"}
		}
	}
	delete(s.Annotations, policies.ContainerNameAnnotation)
	s.Annotations["io.kubernetes.cri.container-type"] = "sandbox"
	return policytest.Shim("sb1", s)
}

// createRequest creates container id from s, whose root and volumes are on the share.
func createRequest(id string, s *specs.Spec) *api.CreateContainerRequest {
	return policytest.Request(id, s)
}

// fileVolumes are the bind mounts of files (the others are directories).
var fileVolumes = map[string]bool{"/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true, "/dev/termination-log": true}

// podLayout lays the shared directory out as the shim does for the containers of specs (by
// id): <id>/rootfs a bind mount of rootfs, <id>/mounts/<n> the source of the n-th bind mount.
// The mounts are undone when b ends.
func podLayout(b *testing.B, shared, rootfs string, podSpecs map[string]*specs.Spec) error {
	for id, s := range podSpecs {
		root := filepath.Join(shared, id, "rootfs")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(rootfs, root, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", root, err)
		}
		b.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
		for _, m := range s.Mounts {
			if m.Type != "bind" {
				continue
			}
			src := filepath.Join(shared, strings.TrimPrefix(m.Source, api.SharedDir+"/"))
			if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
				return err
			}
			var err error
			if fileVolumes[m.Destination] {
				err = os.WriteFile(src, []byte("\n"), 0o644)
			} else {
				err = os.MkdirAll(src, 0o755)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// busyboxRootFS makes a root filesystem from Debian's busybox-static with the applets the
// pod runs (tests/e2e makes a fuller one the same way).
func busyboxRootFS(dir string) error {
	const bb = "/bin/busybox"
	data, err := os.ReadFile(bb)
	if err != nil {
		return fmt.Errorf("%w (apt-get install busybox-static)", err)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		return err
	}
	for _, applet := range []string{"sh", "sleep", "cat", "true"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			return err
		}
	}
	for _, f := range []string{"etc/hosts", "etc/hostname", "etc/resolv.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644)
}

// qemuAccel returns the accelerator on QEMU's command line.
func qemuAccel(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "unknown"
	}
	args := strings.Split(string(raw), "\x00")
	if i := slices.Index(args, "-accel"); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return "unknown"
}
