package policies_test

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/policy/policytest"
)

// TestFastPathAgrees checks the baseline's two forms of the container checks against each
// other: whenever the fast path (container_ok) admits a spec, the violations (container_v)
// find nothing; and specs the fast path leaves to the violations are judged by them.
func TestFastPathAgrees(t *testing.T) {
	text, err := policies.Render(testData())
	if err != nil {
		t.Fatal(err)
	}
	query := `fast := data.agent_policy.container_ok(data.agent_policy.policy_data.containers.web); violations := data.agent_policy.container_v("web")`
	pq, err := rego.New(rego.Query(query), rego.Module("policy.rego", text)).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	few := []string{"CAP_CHOWN", "CAP_KILL"}
	for _, tc := range []struct {
		name      string
		mutate    func(*specs.Spec)
		wantFast  bool
		wantAllow bool
	}{
		{"as declared", func(*specs.Spec) {}, true, true},
		{"fewer capabilities", func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: few, Effective: few, Permitted: few}
		}, false, true},
		{"own network namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		}, false, true},
		{"more masked paths", func(s *specs.Spec) { s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/proc/x") }, true, true},
		// object.subset of an array counts a repeated element once per repetition: the fast
		// path once let a repeated masked path stand in for a missing one.
		{"masked path repeated for a missing one", func(s *specs.Spec) { s.Linux.MaskedPaths[2] = s.Linux.MaskedPaths[1] }, false, false},
		{"read-only path repeated for a missing one", func(s *specs.Spec) { s.Linux.ReadonlyPaths[0] = s.Linux.ReadonlyPaths[1] }, false, false},
		{"extra capability", func(s *specs.Spec) { s.Process.Capabilities.Ambient = []string{"CAP_SYS_ADMIN"} }, false, false},
		{"joined namespace", func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/proc/1/ns/ipc" }, false, false},
		{"root", func(s *specs.Spec) { s.Process.User.UID = 0 }, false, false},
		{"changed env", func(s *specs.Spec) { s.Process.Env[0] = "PATH=/tmp" }, false, false},
		{"/sys writable", func(s *specs.Spec) { s.Mounts[4].Options = []string{"nosuid"} }, false, false},
		{"mount source climbing out", func(s *specs.Spec) { s.Mounts[6].Source = api.SharedVolume("c9", 0) + "/../../../etc/hosts" }, false, false},
		{"mount source dot", func(s *specs.Spec) { s.Mounts[6].Source = "/run/veil/shared/c9/mounts/./0" }, false, false},
		{"another container's volume", func(s *specs.Spec) { s.Mounts[6].Source = api.SharedVolume("c1", 0) }, false, false},
		{"device", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/mem"}} }, false, false},
		{"device cgroup allow", func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Access: "rwm"})
		}, false, false},
		{"own group listed", func(s *specs.Spec) { s.Process.User.AdditionalGids = []uint32{1000} }, true, true},
		{"group 0", func(s *specs.Spec) { s.Process.User.AdditionalGids = []uint32{0} }, false, false},
		{"seccomp profile", func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno} }, true, true},
		{"seccomp listener", func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActNotify} }, false, false},
		{"apparmor", func(s *specs.Spec) { s.Process.ApparmorProfile = "x" }, false, false},
		{"rlimit", func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Hard: 1, Soft: 1}} }, false, false},
		{"shared root of another container", func(s *specs.Spec) { s.Root.Path = api.SharedRootfs("c1") }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := policytest.Shim("c9", policytest.Spec(webContainer()))
			tc.mutate(s)
			req := policytest.Request("c9", s)
			doc, err := policy.RequestDocument(req)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := pq.Eval(context.Background(), rego.EvalInput(map[string]any{"request": doc, "state": map[string]any{}}))
			if err != nil {
				t.Fatal(err)
			}
			fast := len(rs) == 1 && rs[0].Bindings["fast"] == true
			var violations []any
			if len(rs) == 1 {
				violations, _ = rs[0].Bindings["violations"].([]any)
			} else {
				// container_ok undefined: evaluate the violations alone.
				rs, err = rego.New(rego.Query(`v := data.agent_policy.container_v("web")`), rego.Module("policy.rego", text),
					rego.Input(map[string]any{"request": doc, "state": map[string]any{}})).Eval(context.Background())
				if err != nil || len(rs) != 1 {
					t.Fatalf("violations: %v", err)
				}
				violations, _ = rs[0].Bindings["v"].([]any)
			}
			if fast != tc.wantFast {
				t.Fatalf("fast path %v, want %v (violations %v)", fast, tc.wantFast, violations)
			}
			if fast && len(violations) > 0 {
				t.Fatalf("the fast path admits what the violations refuse: %v", violations)
			}
			if (len(violations) == 0) != tc.wantAllow {
				t.Fatalf("violations %v, want allowed %v", violations, tc.wantAllow)
			}
			e := baselineEngine(t, testData())
			if d, _ := e.Decide(context.Background(), "CreateContainer", req); d.Allow != tc.wantAllow {
				t.Fatalf("engine: allow %v (%s), want %v", d.Allow, d.Reason, tc.wantAllow)
			}
		})
	}
}

// TestExecFastPathAgrees: the exec identity's fast path (exec_identity_ok) admits an exec only
// when the violations (exec_security_v) find nothing, on the honest exec and its variants.
func TestExecFastPathAgrees(t *testing.T) {
	text, err := policies.Render(testData())
	if err != nil {
		t.Fatal(err)
	}
	state := created(t).State()
	mod := rego.Module("policy.rego", text)
	const bind = `c := data.agent_policy.policy_data.containers.web; st := input.state.containers.c1; p := input.request.process; `
	for _, tc := range []struct {
		name             string
		mutate           func(*api.Process)
		wantFast, wantOK bool
	}{
		{"as the container", func(*api.Process) {}, true, true},
		{"no groups, no capabilities (the container's)", func(p *api.Process) { p.Capabilities = nil }, true, true},
		{"fewer capabilities", func(p *api.Process) { p.Capabilities = []string{"CAP_CHOWN"} }, false, true},
		{"own gid listed", func(p *api.Process) { p.AdditionalGids = []uint32{1000} }, false, true},
		{"another uid", func(p *api.Process) { p.Uid = 0 }, false, false},
		{"group 0", func(p *api.Process) { p.Gid = 0 }, false, false},
		{"extra group", func(p *api.Process) { p.AdditionalGids = []uint32{10} }, false, false},
		{"extra capability", func(p *api.Process) { p.Capabilities = append(p.Capabilities, "CAP_SYS_ADMIN") }, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := policytest.Exec("c1", []string{"/app/healthcheck", "--quick"}, webEnv, 1000)
			tc.mutate(req.Process)
			doc, err := policy.RequestDocument(req)
			if err != nil {
				t.Fatal(err)
			}
			input := rego.Input(map[string]any{"request": doc, "state": state})
			rs, err := rego.New(rego.Query(bind+`data.agent_policy.exec_identity_ok(c, st, p)`), mod, input).Eval(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			fast := len(rs) == 1
			rs, err = rego.New(rego.Query(bind+`v := data.agent_policy.exec_security_v(c, st)`), mod, input).Eval(context.Background())
			if err != nil || len(rs) != 1 {
				t.Fatalf("violations: %v", err)
			}
			v, _ := rs[0].Bindings["v"].([]any)
			if fast != tc.wantFast || (len(v) == 0) != tc.wantOK || (fast && len(v) > 0) {
				t.Fatalf("fast path %v, violations %v; want fast %v, allowed %v", fast, v, tc.wantFast, tc.wantOK)
			}
		})
	}
}
