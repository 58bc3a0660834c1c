package genpolicy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/yaml"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/policy/policytest"
)

const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// fixture is a registry with the images the pod YAMLs use; ${REG} in a YAML names it.
type fixture struct {
	reg     *testRegistry
	digests map[string]string // repo:tag -> manifest digest
}

func newFixture(t *testing.T) *fixture {
	r := newRegistry(t)
	f := &fixture{reg: r, digests: map[string]string{}}
	add := func(repo string, cfg v1.Config) {
		_, d := r.push(repo, r.image(cfg))
		f.digests[repo] = d
	}
	add("web:1", v1.Config{Entrypoint: []string{"/app/web"}, Cmd: []string{"--port", "8080"},
		Env: []string{imagePath, "APP_MODE=production", "LOG=info"}, WorkingDir: "/app", User: "1000"})
	add("sidecar:2", v1.Config{Cmd: []string{"/bin/proxy"}, Env: []string{imagePath}})
	add("busybox:1", v1.Config{Cmd: []string{"sh"}, Env: []string{imagePath}})
	add("empty:1", v1.Config{})
	add("pause:3.10", v1.Config{Entrypoint: []string{"/pause"}})
	amd := r.image(v1.Config{Cmd: []string{"/amd64"}})
	arm := r.image(v1.Config{Cmd: []string{"/arm64"}})
	r.pushIndex("multi:1", map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm})
	d, _ := amd.Digest()
	f.digests["multi:1"] = d.String()
	return f
}

func (f *fixture) generate(t *testing.T, y string, opts genpolicy.Options) (*genpolicy.Result, error) {
	t.Helper()
	if opts.Resolver == nil {
		opts.Resolver = &genpolicy.RegistryResolver{PlainHTTPLoopback: true}
	}
	if opts.Settings == nil {
		opts.Settings = genpolicy.DefaultSettings()
		opts.Settings.SandboxImage = f.reg.host + "/pause:3.10"
	}
	return genpolicy.Generate(context.Background(), []byte(strings.ReplaceAll(y, "${REG}", f.reg.host)), opts)
}

const singlePod = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: web
    image: ${REG}/web:1
    env:
    - {name: LISTEN, value: ":8080"}
    - {name: LOG, value: debug}
    volumeMounts:
    - {name: data, mountPath: /data}
  volumes:
  - {name: data, emptyDir: {}}
`

// specFor is the OCI spec the runtime would send for entry e in a pod with service links and
// a service account token: its variables plus the runtime's own, its volumes.
func specFor(e policies.Container, volumes ...string) policytest.Container {
	c := specWithout(e, volumes...)
	c.Env = append(c.Env, "DB_SERVICE_PORT=5432")
	c.NoServiceAccount = false
	return c
}

// specWithout is specFor for a pod without service links or service account token.
func specWithout(e policies.Container, volumes ...string) policytest.Container {
	uid, gid := uint32(0), uint32(0)
	if e.Security.UID != nil {
		uid = uint32(*e.Security.UID)
	}
	if e.Security.GID != nil {
		gid = uint32(*e.Security.GID)
	}
	return policytest.Container{
		Name: e.Name, ImageDigest: e.ImageDigest, Args: e.Args, Cwd: e.Cwd, UID: uid, GID: gid,
		Env:     append(slices.Clone(e.Env), "HOSTNAME=web", "KUBERNETES_SERVICE_HOST=10.96.0.1"),
		Caps:    e.Security.Capabilities,
		Volumes: volumes, NoNewPrivileges: e.Security.NoNewPrivileges, ReadOnlyRoot: e.Security.ReadOnlyRoot,
		NoServiceAccount: true, SharedNamespaces: e.Security.SharedNamespaces,
	}
}

func TestGenerateSingleContainer(t *testing.T) {
	f := newFixture(t)
	res, err := f.generate(t, singlePod, genpolicy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Workloads) != 1 {
		t.Fatalf("%d workloads", len(res.Workloads))
	}
	w := res.Workloads[0]
	c := w.Data.Containers[0]
	if c.ImageDigest != f.digests["web:1"] {
		t.Fatalf("digest %s, want %s", c.ImageDigest, f.digests["web:1"])
	}
	if want := []string{"/app/web", "--port", "8080"}; !slices.Equal(c.Args, want) {
		t.Fatalf("args %q, want %q (image entrypoint + cmd)", c.Args, want)
	}
	if want := []string{imagePath, "APP_MODE=production", "LOG=debug", "LISTEN=:8080"}; !slices.Equal(c.Env, want) {
		t.Fatalf("env %q, want %q (image env, pod env replacing LOG)", c.Env, want)
	}
	// User 1000 is not in the image's /etc/passwd (it has none): containerd gives it gid 0.
	if c.Cwd != "/app" || c.Security.UID == nil || *c.Security.UID != 1000 || c.Security.GID == nil ||
		*c.Security.GID != 0 || !slices.Equal(c.Security.AdditionalGids, []int64{0}) {
		t.Fatalf("cwd %q uid %v gid %v additional gids %v", c.Cwd, c.Security.UID, c.Security.GID, c.Security.AdditionalGids)
	}
	if m, ok := c.Mounts["/data"]; !ok || m.Type != "bind" || m.Volume || m.Source != "" || m.EmptyDir != "data" || m.EmptyDirMemory {
		t.Fatalf("mounts %v", c.Mounts)
	}
	if len(res.Warnings) != 0 {
		t.Fatalf("warnings %q", res.Warnings)
	}

	// The generated policy admits the pod's container and nothing else.
	e, err := policy.New(w.Policy)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := specFor(c)
	good.EmptyDirs = map[string]string{"/data": "data"}
	if d, _ := e.Decide(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(good))); !d.Allow {
		t.Fatalf("the pod's own container was denied: %s", d.Reason)
	}
	bad := good
	bad.Env = append(slices.Clone(good.Env[:1]), "APP_MODE=debug")
	if d, _ := e.Decide(ctx, "CreateContainer", policytest.CreateContainer("c2", policytest.Spec(bad))); d.Allow ||
		!strings.Contains(d.Reason, "APP_MODE") {
		t.Fatalf("changed env: %+v", d)
	}

	// The YAML carries the initdata that carries the policy.
	var pod struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
			Labels      map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(res.YAML, &pod); err != nil {
		t.Fatal(err)
	}
	raw, err := initdata.DecodeAnnotation(pod.Metadata.Annotations[initdata.Annotation])
	if err != nil {
		t.Fatal(err)
	}
	doc, err := initdata.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := doc.Policy(); p != w.Policy || string(doc.Digest()) != string(w.Digest) || doc.Algorithm != "sha256" {
		t.Fatal("the annotation's initdata does not carry the policy and digest generated")
	}
	if pod.Metadata.Labels["app"] != "web" {
		t.Fatal("the rest of the pod was not kept")
	}

	// Same input, same output: the digest is reproducible.
	again, err := f.generate(t, singlePod, genpolicy.Options{})
	if err != nil || string(again.Workloads[0].InitData) != string(w.InitData) {
		t.Fatalf("a second run differs (%v)", err)
	}
}

const multiDeployment = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: shop}
    spec:
      enableServiceLinks: false
      automountServiceAccountToken: false
      initContainers:
      - name: init
        image: ${REG}/busybox:1
        command: [sh, -c, "echo $(GREETING) > /work/x"]
        env: [{name: GREETING, value: hello}]
      containers:
      - name: web
        image: ${REG}/web:1
        args: ["--port", "$(PORT)", "$$(literal)"]
        env:
        - {name: PORT, value: "9090"}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        livenessProbe:
          exec: {command: [/app/healthcheck, --live]}
        readinessProbe:
          exec: {command: [/app/healthcheck, --live]}
        startupProbe:
          httpGet: {path: /, port: 9090}
        lifecycle:
          preStop:
            exec: {command: [/app/drain]}
        securityContext:
          runAsUser: 2000
          runAsGroup: 3000
          runAsNonRoot: true
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL], add: [net_bind_service]}
      - name: proxy
        image: ${REG}/sidecar:2
        tty: true
        stdin: true
`

func TestGenerateMultiContainerDeployment(t *testing.T) {
	f := newFixture(t)
	res, err := f.generate(t, multiDeployment, genpolicy.Options{Algorithm: "sha384"})
	if err != nil {
		t.Fatal(err)
	}
	w := res.Workloads[0]
	if w.Kind != "Deployment" || w.Name != "shop" || len(w.Data.Containers) != 4 || len(w.Digest) != 48 {
		t.Fatalf("workload %s/%s with %d containers, digest of %d bytes", w.Kind, w.Name, len(w.Data.Containers), len(w.Digest))
	}
	byName := map[string]policies.Container{}
	for _, c := range w.Data.Containers {
		byName[c.Name] = c
	}
	init, web, proxy := byName["init"], byName["web"], byName["proxy"]
	// The sandbox (pause) container that containerd's CRI creates first has its own entry.
	sb := byName[genpolicy.SandboxEntry]
	if !slices.Equal(sb.Args, []string{"/pause"}) || sb.ImageDigest != f.digests["pause:3.10"] ||
		!sb.Security.ReadOnlyRoot || len(sb.Exec) != 0 || sb.Stdin || sb.Mounts["/dev/shm"].Type != "bind" ||
		!sb.Mounts["/dev/shm"].Volume || sb.PauseBundle || !sb.Security.NoNewPrivileges {
		t.Fatalf("sandbox entry %+v", sb)
	}
	if want := []string{"sh", "-c", "echo hello > /work/x"}; !slices.Equal(init.Args, want) {
		t.Fatalf("init args %q, want %q", init.Args, want)
	}
	if want := []string{"/app/web", "--port", "9090", "$(literal)"}; !slices.Equal(web.Args, want) {
		t.Fatalf("web args %q, want %q (entrypoint + expanded args)", web.Args, want)
	}
	if want := [][]string{{"/app/healthcheck", "--live"}, {"/app/drain"}}; !slices.EqualFunc(web.Exec, want, slices.Equal) {
		t.Fatalf("web exec %q, want %q", web.Exec, want)
	}
	if !slices.Contains(web.EnvPatterns, `(?s)^POD_IP=.*$`) || slices.ContainsFunc(web.Env, func(e string) bool { return strings.HasPrefix(e, "POD_IP=") }) {
		t.Fatalf("POD_IP: env %q patterns %q", web.Env, web.EnvPatterns)
	}
	for _, p := range web.EnvPatterns {
		if strings.Contains(p, "SERVICE_PORT_[A-Z0-9_]+") {
			t.Fatal("service link patterns with enableServiceLinks: false")
		}
	}
	s := web.Security
	if !slices.Equal(s.Capabilities, []string{"CAP_NET_BIND_SERVICE"}) || *s.UID != 2000 || *s.GID != 3000 ||
		!s.NonRoot || !s.NoNewPrivileges || !s.ReadOnlyRoot {
		t.Fatalf("web security %+v", s)
	}
	if _, ok := web.Mounts["/var/run/secrets/kubernetes.io/serviceaccount"]; ok {
		t.Fatal("service account mount with automountServiceAccountToken: false")
	}
	if !proxy.Stdin || !slices.Contains(proxy.Env, "TERM=xterm") || proxy.ImageDigest != f.digests["sidecar:2"] ||
		!slices.Equal(proxy.Args, []string{"/bin/proxy"}) || len(proxy.Exec) != 0 {
		t.Fatalf("proxy %+v", proxy)
	}

	// The Service passes through; the template gets the annotation.
	out := string(res.YAML)
	if !strings.Contains(out, "kind: Service") || strings.Count(out, initdata.Annotation) != 1 {
		t.Fatalf("output YAML:\n%s", out)
	}

	// Every container of the pod is admitted, and exec is limited to its probe and hook.
	e, err := policy.New(w.Policy)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range w.Data.Containers {
		if c.Name == genpolicy.SandboxEntry {
			continue // specWithout adds what CRI gives containers; tests/cri runs a real sandbox
		}
		if d, _ := e.Decide(ctx, "CreateContainer", policytest.CreateContainer("id-"+c.Name, policytest.Spec(specWithout(c)))); !d.Allow {
			t.Fatalf("%s denied: %s", c.Name, d.Reason)
		}
	}
	for _, tc := range []struct {
		args  []string
		allow bool
	}{{[]string{"/app/healthcheck", "--live"}, true}, {[]string{"/app/drain"}, true}, {[]string{"/bin/sh"}, false}} {
		req := execAs("id-web", tc.args, web)
		if d, _ := e.Decide(ctx, "ExecProcess", req); d.Allow != tc.allow {
			t.Fatalf("exec %q: allow %v (%s)", tc.args, d.Allow, d.Reason)
		}
	}
}

// execAs is the request with which the runtime runs args in container id made from entry e:
// CRI runs an exec (a probe, kubectl exec) as the container's process, so with its user,
// groups, capabilities and no_new_privileges.
func execAs(id string, args []string, e policies.Container) *api.ExecProcessRequest {
	p := &api.Process{Args: args, Env: e.Env, Cwd: "/", Capabilities: e.Security.Capabilities,
		NoNewPrivileges: e.Security.NoNewPrivileges}
	if e.Security.UID != nil {
		p.Uid = uint32(*e.Security.UID)
	}
	if e.Security.GID != nil {
		p.Gid = uint32(*e.Security.GID)
	}
	for _, g := range e.Security.AdditionalGids {
		p.AdditionalGids = append(p.AdditionalGids, uint32(g))
	}
	return &api.ExecProcessRequest{ContainerId: id, ExecId: "exec-1", Process: p}
}

func TestGenerateMultiPlatform(t *testing.T) {
	f := newFixture(t)
	y := "kind: Pod\nmetadata: {name: m}\nspec:\n  containers:\n  - {name: m, image: ${REG}/multi:1}\n"
	res, err := f.generate(t, y, genpolicy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Workloads[0].Data.Containers[0]
	if c.ImageDigest != f.digests["multi:1"] || !slices.Equal(c.Args, []string{"/amd64"}) {
		t.Fatalf("digest %s args %q, want the linux/amd64 manifest %s", c.ImageDigest, c.Args, f.digests["multi:1"])
	}
	arm, _ := v1.ParsePlatform("linux/arm64")
	res, err = f.generate(t, y, genpolicy.Options{Resolver: &genpolicy.RegistryResolver{PlainHTTPLoopback: true, Platform: *arm}})
	if err != nil || !slices.Equal(res.Workloads[0].Data.Containers[0].Args, []string{"/arm64"}) {
		t.Fatalf("arm64: %v", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	f := newFixture(t)
	pod := func(container string) string {
		return "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - " + container + "\n"
	}
	for _, tc := range []struct {
		name    string
		yaml    string
		opts    genpolicy.Options
		wantErr string
	}{
		{"privileged", pod("{name: a, image: ${REG}/web:1, securityContext: {privileged: true}}"), genpolicy.Options{}, "securityContext.privileged"},
		{"add ALL", pod("{name: a, image: ${REG}/web:1, securityContext: {capabilities: {add: [ALL]}}}"), genpolicy.Options{}, "capabilities.add: ALL"},
		{"host network", "kind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n  containers: [{name: a, image: ${REG}/web:1}]\n", genpolicy.Options{}, "spec.hostNetwork"},
		{"host pid", "kind: Pod\nmetadata: {name: p}\nspec:\n  hostPID: true\n  containers: [{name: a, image: ${REG}/web:1}]\n", genpolicy.Options{}, "spec.hostPID"},
		{"envFrom", pod("{name: a, image: ${REG}/web:1, envFrom: [{configMapRef: {name: x}}]}"), genpolicy.Options{}, "envFrom: not supported"},
		{"unknown image", pod("{name: a, image: ${REG}/nope:1}"), genpolicy.Options{}, `container a: image "127.0.0.1`},
		{"plain HTTP refused", pod("{name: a, image: ${REG}/web:1}"), genpolicy.Options{Resolver: &genpolicy.RegistryResolver{}}, "plain HTTP to 127.0.0.1"},
		{"empty command falls back to the image", pod("{name: a, image: ${REG}/multi:1, command: []}"), genpolicy.Options{}, ""},
		{"no command anywhere", pod("{name: a, image: ${REG}/empty:1}"), genpolicy.Options{}, "container a: no command"},
		{"no name", pod("{image: ${REG}/web:1}"), genpolicy.Options{}, "name: missing"},
		{"no workload", "kind: Service\nmetadata: {name: s}\n", genpolicy.Options{}, "no pod or workload"},
		{"no containers", "kind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n", genpolicy.Options{}, "spec.containers: empty"},
		{"bad YAML", "kind: [\n", genpolicy.Options{}, "YAML document 1"},
		{"replacing the policy", pod("{name: a, image: ${REG}/web:1}"), genpolicy.Options{ExtraData: map[string]string{"policy.rego": "x"}}, "may not replace policy.rego"},
		{"bad algorithm", pod("{name: a, image: ${REG}/web:1}"), genpolicy.Options{Algorithm: "md5"}, `algorithm: "md5"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.generate(t, tc.yaml, tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseSettings(t *testing.T) {
	s, err := genpolicy.ParseSettings([]byte(`{"network": {"interface_names": ["^net0$"]}, "capabilities": ["CAP_KILL"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Network.InterfaceNames, []string{"^net0$"}) || !slices.Equal(s.Capabilities, []string{"CAP_KILL"}) ||
		len(s.MaskedPaths) == 0 {
		t.Fatalf("settings %+v", s)
	}
	if _, err := genpolicy.ParseSettings([]byte(`{"capabilites": []}`)); err == nil || !strings.Contains(err.Error(), "capabilites") {
		t.Fatalf("misspelt field: %v", err)
	}
	// volume_source was removed: volumes are matched by identity now. A file that still sets
	// it is refused by name rather than silently given another meaning.
	_, err = genpolicy.ParseSettings([]byte(`{"volume_source": "^/run/veil/.*$"}`))
	if err == nil || !strings.Contains(err.Error(), "volume_source was removed") {
		t.Fatalf("volume_source: %v", err)
	}
	s, err = genpolicy.ParseSettings([]byte(`{"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1024}]}`))
	if err != nil || !slices.Equal(s.Rlimits, []policies.Rlimit{{Type: "RLIMIT_NOFILE", Hard: 1048576, Soft: 1024}}) {
		t.Fatalf("rlimits %+v, %v", s.Rlimits, err)
	}
}

// --decision-log makes a debugging policy: the host may read the decision log; by default it
// may not.
func TestGenerateDecisionLog(t *testing.T) {
	f := newFixture(t)
	for _, on := range []bool{false, true} {
		res, err := f.generate(t, singlePod, genpolicy.Options{DecisionLog: on})
		if err != nil {
			t.Fatal(err)
		}
		w := res.Workloads[0]
		if w.Data.Sandbox.DecisionLog != on {
			t.Fatalf("DecisionLog %v: sandbox.decision_log is %v", on, w.Data.Sandbox.DecisionLog)
		}
		e, err := policy.New(w.Policy)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := e.Decide(context.Background(), "ReadDecisionLog", &api.ReadDecisionLogRequest{}); d.Allow != on {
			t.Fatalf("DecisionLog %v: ReadDecisionLog allowed %v (%s)", on, d.Allow, d.Reason)
		}
	}
}

func TestGenerateGuestPull(t *testing.T) {
	f := newFixture(t)
	for _, on := range []bool{false, true} {
		res, err := f.generate(t, singlePod, genpolicy.Options{GuestPull: on})
		if err != nil {
			t.Fatal(err)
		}
		d := res.Workloads[0].Data
		if slices.Contains(d.Sandbox.StorageDrivers, api.DriverGuestPull) {
			t.Fatalf("GuestPull %v: the sandbox may mount %q", on, d.Sandbox.StorageDrivers)
		}
		for _, c := range d.Containers {
			// Under guest pull the sandbox container runs the pause bundle, every other one
			// its pulled image.
			sandbox := c.Name == genpolicy.SandboxEntry
			if c.GuestPull != (on && !sandbox) || c.PauseBundle != (on && sandbox) {
				t.Fatalf("GuestPull %v: entry %s has guest_pull %v, pause_bundle %v", on, c.Name, c.GuestPull, c.PauseBundle)
			}
		}
	}
}

// The ports the pod's containers declare (TCP, each once) are the ones port forwarding may
// reach.
func TestGenerateForwardPorts(t *testing.T) {
	f := newFixture(t)
	const pod = `apiVersion: v1
kind: Pod
metadata: {name: ports}
spec:
  containers:
  - name: web
    image: ${REG}/web:1
    ports:
    - {containerPort: 8080}
    - {containerPort: 9090, protocol: TCP}
    - {containerPort: 5353, protocol: UDP}
  - name: sidecar
    image: ${REG}/sidecar:2
    ports:
    - {containerPort: 8080, protocol: TCP}
    - {containerPort: 15000}
`
	res, err := f.generate(t, pod, genpolicy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Workloads[0].Data.Network.ForwardPorts; !slices.Equal(got, []int{8080, 9090, 15000}) {
		t.Fatalf("forward ports %v, want [8080 9090 15000]", got)
	}
}
