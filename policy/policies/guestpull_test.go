package policies_test

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/policy/policytest"
)

// guestPullData is testData with guest pull required of the web container.
func guestPullData() policies.Data {
	d := testData()
	d.Containers[0].GuestPull = true
	d.Sandbox.StorageDrivers = append(d.Sandbox.StorageDrivers, "image_guest_pull")
	return d
}

const pulledRoot = "/run/veil/containers/c9/rootfs"

// pullStorage is the storage the shim sends under guest_pull.
func pullStorage(mp string) *api.Storage {
	return &api.Storage{Driver: "image_guest_pull", Source: "registry.example/web:1", MountPoint: mp}
}

// TestGuestPull checks the guest-pull rule: with GuestPull, CreateContainer is allowed only
// with an image_guest_pull storage on root.path and nothing else over it, and the fast path
// agrees with the violations on every case.
func TestGuestPull(t *testing.T) {
	for _, tc := range []struct {
		name     string
		data     func() policies.Data
		root     string
		storages []*api.Storage
		want     string // "" means allowed
	}{
		{"pulled", guestPullData, pulledRoot, []*api.Storage{pullStorage(pulledRoot)}, ""},
		{"not required: shared rootfs", testData, policytest.SandboxDir + "/web/rootfs", nil, ""},
		{"not required: pulled", func() policies.Data {
			d := testData()
			d.Sandbox.StorageDrivers = append(d.Sandbox.StorageDrivers, "image_guest_pull")
			return d
		}, pulledRoot, []*api.Storage{pullStorage(pulledRoot)}, ""},
		{"shared rootfs", guestPullData, policytest.SandboxDir + "/web/rootfs", nil,
			`root file system "/run/veil/shared/sb1/web/rootfs" must be an image_guest_pull storage`},
		{"host rootfs storage", guestPullData, pulledRoot,
			[]*api.Storage{{Driver: "virtiofs", Source: "veil-rootfs", MountPoint: pulledRoot}},
			"must be an image_guest_pull storage"},
		{"pull elsewhere", guestPullData, pulledRoot, []*api.Storage{pullStorage("/run/veil/containers/c9/other")},
			"must be an image_guest_pull storage"},
		{"share over the pulled root", guestPullData, pulledRoot,
			[]*api.Storage{pullStorage(pulledRoot), {Driver: "virtiofs", Source: "x", MountPoint: pulledRoot + "/etc"}},
			`storage "virtiofs" at "/run/veil/containers/c9/rootfs/etc" overlaps`},
		{"tmpfs over its parent", guestPullData, pulledRoot,
			[]*api.Storage{pullStorage(pulledRoot), {Driver: "tmpfs", MountPoint: "/run/veil/containers/c9"}},
			`storage "tmpfs" at "/run/veil/containers/c9" overlaps`},
		{"a second storage at the root", guestPullData, pulledRoot,
			[]*api.Storage{{Driver: "tmpfs", MountPoint: pulledRoot}, pullStorage(pulledRoot)},
			`storage "tmpfs" at "/run/veil/containers/c9/rootfs" overlaps`},
		{"driver not allowed", func() policies.Data {
			d := testData()
			d.Containers[0].GuestPull = true
			return d
		}, pulledRoot, []*api.Storage{pullStorage(pulledRoot)}, `storage driver "image_guest_pull" is not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policytest.Spec(webContainer())
			s.Root.Path = tc.root
			req := policytest.CreateContainer("c9", s)
			req.Storages = tc.storages
			fast, violations := judge(t, tc.data(), req)
			if fast && len(violations) > 0 {
				t.Fatalf("the fast path admits what the violations refuse: %v", violations)
			}
			if tc.want == "" && (!fast || len(violations) > 0) {
				t.Fatalf("want allowed on the fast path: fast %v, violations %v", fast, violations)
			}
			d, err := baselineEngine(t, tc.data()).Decide(context.Background(), "CreateContainer", req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if !d.Allow {
					t.Fatalf("denied: %s", d.Reason)
				}
				return
			}
			if d.Allow || !strings.Contains(d.Reason, tc.want) {
				t.Fatalf("allow %v, reason %q: want denied with %q", d.Allow, d.Reason, tc.want)
			}
		})
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
