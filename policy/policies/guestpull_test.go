package policies_test

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/policy/policytest"
)

// guestPullData is testData with guest pull required of the web container.
func guestPullData() policies.Data {
	d := testData()
	d.Containers[0].GuestPull = true
	return d
}

const pulledRoot = "/run/veil/containers/c9/rootfs"

// pullStorage is the storage the shim sends under guest_pull.
func pullStorage(mp string) *api.Storage {
	return &api.Storage{Driver: api.DriverGuestPull, Source: "registry.example/web:1", MountPoint: mp}
}

// TestRootFileSystem checks where a container's root may come from: with GuestPull, only an
// image_guest_pull storage at the agent's root path for the container and nothing else;
// without it, only the share's directory for the container and no storage at all. The fast
// path agrees with the violations on every case.
func TestRootFileSystem(t *testing.T) {
	shared := api.SharedRootfs("c9")
	for _, tc := range []struct {
		name     string
		data     func() policies.Data
		root     string
		storages []*api.Storage
		want     string // "" means allowed
	}{
		{"pulled", guestPullData, pulledRoot, []*api.Storage{pullStorage(pulledRoot)}, ""},
		{"shared", testData, shared, nil, ""},
		{"not required, pulled anyway", testData, pulledRoot, []*api.Storage{pullStorage(pulledRoot)},
			`storage "image_guest_pull" at "/run/veil/containers/c9/rootfs" is not allowed: the root is shared from the host`},
		{"shared rootfs", guestPullData, shared, nil,
			`root file system "/run/veil/shared/c9/rootfs" must be an image_guest_pull storage`},
		{"another container's share", testData, api.SharedRootfs("c1"), nil,
			`root.path "/run/veil/shared/c1/rootfs" is not "/run/veil/shared/c9/rootfs"`},
		{"a share elsewhere", testData, "/run/veil/shared/x/rootfs", nil, `is not "/run/veil/shared/c9/rootfs"`},
		{"host rootfs storage", guestPullData, pulledRoot,
			[]*api.Storage{{Driver: api.DriverVirtioFS, Source: "veil-rootfs", MountPoint: pulledRoot}},
			"must be an image_guest_pull storage"},
		{"pull elsewhere", guestPullData, "/run/veil/shared/c9/rootfs", []*api.Storage{pullStorage("/run/veil/shared/c9/rootfs")},
			"must be an image_guest_pull storage"},
		{"share over the pulled root", guestPullData, pulledRoot,
			[]*api.Storage{pullStorage(pulledRoot), {Driver: api.DriverVirtioFS, Source: "x", MountPoint: pulledRoot + "/etc"}},
			`storage "virtiofs" at "/run/veil/containers/c9/rootfs/etc" is not allowed: the container's only storage is its root`},
		{"the root twice", guestPullData, pulledRoot, []*api.Storage{pullStorage(pulledRoot), pullStorage(pulledRoot)},
			"the root file system's storage is given 2 times"},
		{"a bind storage beside", testData, shared,
			[]*api.Storage{{Driver: api.DriverBind, Source: "/run/veil/containers/c1/rootfs", MountPoint: "/run/veil/shared/alias"}},
			`storage "bind" at "/run/veil/shared/alias" is not allowed`},
		{"pause bundle for a pod container", guestPullData, pulledRoot,
			[]*api.Storage{{Driver: api.DriverPause, MountPoint: pulledRoot}}, "must be an image_guest_pull storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policytest.Shim("c9", policytest.Spec(webContainer()))
			s.Root.Path = tc.root
			req := policytest.Request("c9", s, tc.storages...)
			fast, violations := judge(t, tc.data(), req)
			if fast && len(violations) > 0 {
				t.Fatalf("the fast path admits what the violations refuse: %v", violations)
			}
			if tc.want == "" && (!fast || len(violations) > 0) {
				t.Fatalf("want allowed on the fast path: fast %v, violations %v", fast, violations)
			}
			wantCreate(t, baselineEngine(t, tc.data()), req, tc.want)
		})
	}
}

// pauseData is testData with the guest-pull sandbox entry genpolicy writes: the pause bundle.
func pauseData() policies.Data {
	d := guestPullData()
	s := genpolicy.DefaultSettings()
	pause := int64(65535)
	d.Containers = append(d.Containers, policies.Container{
		Name: genpolicy.SandboxEntry, PauseBundle: true, Args: []string{api.PauseCommand}, Cwd: "/",
		Mounts: map[string]policies.Mount{"/proc": s.SandboxMounts["/proc"], "/dev/shm": {Type: "bind", Volume: true, Options: []string{"ro"}}},
		Security: policies.Security{
			UID: &pause, GID: &pause, AdditionalGids: []int64{pause}, NoNewPrivileges: true, ReadOnlyRoot: true,
			MaskedPaths: s.MaskedPaths, ReadonlyPaths: s.ReadonlyPaths,
		},
	})
	return d
}

// pauseRequest is the sandbox container's CreateContainer as the shim sends it under guest
// pull (shim/task pauseProcess), with the host's pause digest gone.
func pauseRequest(f func(s *specs.Spec, r *api.CreateContainerRequest)) *api.CreateContainerRequest {
	root := api.ContainerRootfs("sb1")
	s := policytest.Spec(policytest.Container{Name: "sandbox", Args: []string{api.PauseCommand}, UID: 65535, GID: 65535,
		Caps: []string{}, NoNewPrivileges: true, ReadOnlyRoot: true, NoServiceAccount: true})
	s.Process.User.AdditionalGids = []uint32{65535}
	s.Process.Capabilities = &specs.LinuxCapabilities{}
	delete(s.Annotations, "io.kubernetes.cri.container-name")
	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "bind", Source: api.SharedVolume("sb1", 0), Options: []string{"rbind", "ro"}},
	}
	s.Root.Path = root
	r := policytest.Request("sb1", s, &api.Storage{Driver: api.DriverPause, MountPoint: root})
	if f != nil {
		f(s, r)
		r.OciSpec = policytest.JSON(s)
	}
	return r
}

// Under guest pull the sandbox container runs only the guest's pause bundle: a root the host
// shares, or any other program, is refused.
func TestPauseBundle(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *api.CreateContainerRequest
		want string
	}{
		{"the pause bundle", pauseRequest(nil), ""},
		{"a host root with a planted /pause", pauseRequest(func(s *specs.Spec, r *api.CreateContainerRequest) {
			s.Root.Path, r.Storages = api.SharedRootfs("sb1"), nil
		}), "no container of the policy matches"},
		{"the bundle running a shell", pauseRequest(func(s *specs.Spec, r *api.CreateContainerRequest) {
			s.Process.Args = []string{"/bin/sh"}
		}), "no container of the policy matches"},
		{"the bundle as root", pauseRequest(func(s *specs.Spec, r *api.CreateContainerRequest) {
			s.Process.User = specs.User{}
		}), "no container of the policy matches"},
		{"the bundle at another path", pauseRequest(func(s *specs.Spec, r *api.CreateContainerRequest) {
			s.Root.Path, r.Storages[0].MountPoint = "/run/veil/shared/sb1/rootfs", "/run/veil/shared/sb1/rootfs"
		}), "no container of the policy matches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCreate(t, baselineEngine(t, pauseData()), tc.req, tc.want)
		})
	}
}

// wantCreate fails t unless e allows req (want "") or denies it with a reason containing want.
func wantCreate(t *testing.T, e *policy.Engine, req *api.CreateContainerRequest, want string) {
	t.Helper()
	d, err := e.Decide(context.Background(), "CreateContainer", req)
	if err != nil {
		t.Fatal(err)
	}
	if want == "" {
		if !d.Allow {
			t.Fatalf("denied: %s", d.Reason)
		}
		return
	}
	if d.Allow || !strings.Contains(d.Reason, want) {
		t.Fatalf("allow %v, reason %q: want denied with %q", d.Allow, d.Reason, want)
	}
}

// judge evaluates the fast path and the violations of the web entry for req under data.
func judge(t *testing.T, data policies.Data, req *api.CreateContainerRequest) (bool, []any) {
	t.Helper()
	text, err := policies.Render(data)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := policy.RequestDocument(req)
	if err != nil {
		t.Fatal(err)
	}
	input := rego.Input(map[string]any{"request": doc, "state": map[string]any{}})
	mod := rego.Module("policy.rego", text)
	rs, err := rego.New(rego.Query(`fast := data.agent_policy.container_ok(data.agent_policy.policy_data.containers.web)`), mod, input).Eval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fast := len(rs) == 1 && rs[0].Bindings["fast"] == true
	rs, err = rego.New(rego.Query(`v := data.agent_policy.container_v("web")`), mod, input).Eval(context.Background())
	if err != nil || len(rs) != 1 {
		t.Fatalf("violations: %v", err)
	}
	v, _ := rs[0].Bindings["v"].([]any)
	return fast, v
}
