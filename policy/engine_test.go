package policy_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
)

func mustEngine(t testing.TB, rego string, opts ...policy.Option) *policy.Engine {
	t.Helper()
	e, err := policy.New(rego, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// specJSON is a minimal OCI spec running args.
func specJSON(args ...string) []byte {
	b, err := json.Marshal(&specs.Spec{
		Version: specs.Version, Process: &specs.Process{Args: args, Cwd: "/"},
		Root: &specs.Root{Path: "/run/veil/r"}, Linux: &specs.Linux{},
	})
	if err != nil {
		panic(err)
	}
	return b
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rego       string
		method     string
		req        proto.Message
		wantAllow  bool
		wantReason string
		wantErr    bool
	}{
		{"true allows", "CheckRequest := true", "Check", &api.CheckRequest{}, true, "", false},
		{"full method name", "CheckRequest := true", "/" + api.ServiceName + "/Check", &api.CheckRequest{}, true, "", false},
		{"false denies", "CheckRequest := false", "Check", &api.CheckRequest{}, false, "returned false", false},
		{"object allows", `CheckRequest := {"allow": true, "reason": "fine"}`, "Check", &api.CheckRequest{}, true, "fine", false},
		{"deny with reason", `CopyFileRequest := {"allow": false, "reason": sprintf("no writes to %s", [input.request.path])}`,
			"CopyFile", &api.CopyFileRequest{Path: "/etc/x"}, false, "no writes to /etc/x", false},
		{"missing rule denies", "VersionRequest := true", "Check", &api.CheckRequest{}, false, "the policy has no rule CheckRequest", false},
		{"undefined denies", "CheckRequest if false", "Check", &api.CheckRequest{}, false, "undefined for this request", false},
		{"evaluation error denies", "CheckRequest := 1 if true\nCheckRequest := 2 if true", "Check", &api.CheckRequest{}, false, "conflict", true},
		{"string denies", `CheckRequest := "yes"`, "Check", &api.CheckRequest{}, false, "returned a string", false},
		{"number denies", `CheckRequest := 1`, "Check", &api.CheckRequest{}, false, "returned a number", false},
		{"object without allow denies", `CheckRequest := {"ok": true}`, "Check", &api.CheckRequest{}, false, "no boolean \"allow\"", false},
		{"allow as string denies", `CheckRequest := {"allow": "true"}`, "Check", &api.CheckRequest{}, false, "no boolean \"allow\"", false},
		{"bad state denies", `CheckRequest := {"allow": true, "state": 3}`, "Check", &api.CheckRequest{}, false, "state", false},
		{"request fields by proto name", `SignalProcessRequest if { input.request.container_id == "c1"; input.request.exec_id == ""; input.request.all == false }`,
			"SignalProcess", &api.SignalProcessRequest{ContainerId: "c1"}, true, "", false},
		{"method in input", `ReadStreamRequest if input.method == "ReadStderr"`, "ReadStdout", &api.ReadStreamRequest{}, false, "undefined", false},
		{"oci spec decoded", `CreateContainerRequest if input.request.oci_spec.process.args == ["/bin/app", "-v"]`,
			"CreateContainer", &api.CreateContainerRequest{ContainerId: "c", OciSpec: specJSON("/bin/app", "-v")}, true, "", false},
		{"oci spec not JSON", `CreateContainerRequest := true`, "CreateContainer",
			&api.CreateContainerRequest{OciSpec: []byte("{nope")}, false, "oci_spec", true},
		{"unknown method", "CheckRequest := true", "Nope", &api.CheckRequest{}, false, "not a method", true},
		{"wrong request type", "CheckRequest := true", "Check", &api.VersionRequest{}, false, "request is not a CheckRequest", true},
		{"nil request", "CheckRequest := true", "Check", nil, false, "request is not a CheckRequest", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEngine(t, "package agent_policy\n\n"+tc.rego+"\n")
			d, err := e.Decide(context.Background(), tc.method, tc.req)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if d.Allow != tc.wantAllow {
				t.Fatalf("Allow = %v (reason %q), want %v", d.Allow, d.Reason, tc.wantAllow)
			}
			if !strings.Contains(d.Reason, tc.wantReason) {
				t.Fatalf("Reason = %q, want it to contain %q", d.Reason, tc.wantReason)
			}
			if !d.Allow && d.Reason == "" {
				t.Fatal("a denial without a reason")
			}
		})
	}
}

func TestDecisionErr(t *testing.T) {
	e := mustEngine(t, "package agent_policy\n\nExecProcessRequest := {\"allow\": false, \"reason\": \"exec of [\\\"sh\\\"] is not allowed\"}\n")
	d, _ := e.Decide(context.Background(), "ExecProcess", &api.ExecProcessRequest{})
	want := `rpc error: code = PermissionDenied desc = ExecProcessRequest denied by policy: exec of ["sh"] is not allowed`
	if err := d.Err(); err == nil || err.Error() != want {
		t.Fatalf("Err() = %v, want %s", err, want)
	}
	if err := (policy.Decision{Allow: true}).Err(); err != nil {
		t.Fatalf("allowed Err() = %v", err)
	}
}

const statePolicy = `package agent_policy

CreateContainerRequest := {"allow": true, "state": {"containers": {input.request.container_id: {"entry": "web"}}}} if {
	input.request.oci_spec.process.args[0] == "/web"
} else := {"allow": false, "reason": "unknown command", "state": {"poisoned": true}}

ExecProcessRequest := {"allow": true} if {
	input.state.containers[input.request.container_id].entry == "web"
} else := {"allow": false, "reason": sprintf("container %s unknown", [input.request.container_id])}

RemoveContainerRequest := {"allow": true, "state": {"containers": {input.request.container_id: null}}}
`

func TestStateCarried(t *testing.T) {
	ctx := context.Background()
	e := mustEngine(t, statePolicy)
	exec := &api.ExecProcessRequest{ContainerId: "c1", Process: &api.Process{Args: []string{"ls"}}}
	steps := []struct {
		method string
		req    proto.Message
		allow  bool
	}{
		{"ExecProcess", exec, false},
		{"CreateContainer", &api.CreateContainerRequest{ContainerId: "c1", OciSpec: specJSON("/evil")}, false},
		{"ExecProcess", exec, false},
		{"CreateContainer", &api.CreateContainerRequest{ContainerId: "c1", OciSpec: specJSON("/web")}, true},
		{"ExecProcess", exec, true},
		{"ExecProcess", &api.ExecProcessRequest{ContainerId: "c2"}, false},
		{"RemoveContainer", &api.RemoveContainerRequest{ContainerId: "c1"}, true},
		{"ExecProcess", exec, false},
	}
	for i, s := range steps {
		d, err := e.Decide(ctx, s.method, s.req)
		if err != nil || d.Allow != s.allow {
			t.Fatalf("step %d %s: allow %v (%q, err %v), want %v", i, s.method, d.Allow, d.Reason, err, s.allow)
		}
	}
	if _, ok := e.State()["poisoned"]; ok {
		t.Fatal("a denied decision changed the state")
	}
	if c, _ := e.State()["containers"].(map[string]any); len(c) != 0 {
		t.Fatalf("state after remove = %v, want no containers", e.State())
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name, rego, wantErr string
	}{
		{"syntax error", "package agent_policy\n\nCheckRequest := }\n\nVersionRequest := true\n", "policy.rego:3: rego_parse_error"},
		{"syntax error names parse", "package agent_policy\n\nCheckRequest if input.x ==\n", "rego_parse_error"},
		{"wrong package", "package other\n\nCheckRequest := true\n", "package is data.other, want package agent_policy"},
		{"unsafe variable", "package agent_policy\n\nCheckRequest if x == 1\n", "policy.rego:3: rego_unsafe_var_error"},
		{"v0 syntax", "package agent_policy\n\nCheckRequest { true }\n", "policy.rego:3"},
		{"http.send refused", "package agent_policy\n\nCheckRequest if http.send({\"method\": \"get\", \"url\": \"http://x\"})\n", "http.send"},
		{"empty", "", "empty module"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.New(tc.rego)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	_, err := policy.New("package agent_policy\nx := [\n", policy.WithFilename("initdata:policy.rego"))
	if err == nil || !strings.Contains(err.Error(), "initdata:policy.rego:") {
		t.Fatalf("error %v does not name the file", err)
	}
}

func TestReplace(t *testing.T) {
	ctx := context.Background()
	e := mustEngine(t, "package agent_policy\n\nCheckRequest := false\n")
	if err := e.Replace("package agent_policy\n\nCheckRequest := [\n"); err == nil {
		t.Fatal("Replace accepted a syntax error")
	}
	if d, _ := e.Decide(ctx, "Check", &api.CheckRequest{}); d.Allow {
		t.Fatal("a failed Replace changed the policy")
	}
	if err := e.Replace("package agent_policy\n\nCheckRequest := true\n"); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Decide(ctx, "Check", &api.CheckRequest{}); !d.Allow {
		t.Fatalf("after Replace: %q", d.Reason)
	}
}

func TestRequestDocument(t *testing.T) {
	for _, tc := range []struct {
		name    string
		req     proto.Message
		check   func(map[string]any) string
		wantErr bool
	}{
		{"snake case and unpopulated", &api.ExecProcessRequest{ContainerId: "c"}, func(d map[string]any) string {
			if d["container_id"] != "c" || d["exec_id"] != "" {
				return "ids"
			}
			if _, ok := d["process"]; !ok || d["process"] != nil {
				return "process should be present and null"
			}
			return ""
		}, false},
		{"spec decoded", &api.CreateContainerRequest{OciSpec: specJSON("x")}, func(d map[string]any) string {
			sp, ok := d["oci_spec"].(map[string]any)
			if !ok || sp["process"] == nil {
				return "oci_spec not an object"
			}
			return ""
		}, false},
		{"empty spec is null", &api.CreateContainerRequest{}, func(d map[string]any) string {
			if v, ok := d["oci_spec"]; !ok || v != nil {
				return "oci_spec should be null"
			}
			return ""
		}, false},
		{"spec canonical: the agent's reading wins", &api.CreateContainerRequest{OciSpec: []byte(
			`{"process":{"args":["/good"]},"Process":{"args":["/evil"]},"unknownField":1}`)}, func(d map[string]any) string {
			sp := d["oci_spec"].(map[string]any)
			args := sp["process"].(map[string]any)["args"].([]any)
			if args[0] != "/evil" {
				return "policy saw a different process than the agent would run"
			}
			if _, ok := sp["unknownField"]; ok {
				return "unknown field kept"
			}
			return ""
		}, false},
		{"spec with wrong types", &api.CreateContainerRequest{OciSpec: []byte(`{"process":{"args":"sh"}}`)}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := policy.RequestDocument(tc.req)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.check != nil {
				if msg := tc.check(d); msg != "" {
					t.Fatalf("%s: %v", msg, d)
				}
			}
		})
	}
}
