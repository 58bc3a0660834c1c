//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/shim/ctl"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// Request content that must never reach the decision log.
const (
	secretArg = "secret-arg-4711"
	secretEnv = "secret-env-value-4711"
)

// bootBaseline boots a VM whose initdata policy is the confidential baseline rendered with
// data; it is closed when the test ends.
func bootBaseline(t *testing.T, prefix string, data policies.Data) *sandbox.Sandbox {
	t.Helper()
	text, err := policies.Render(data)
	if err != nil {
		t.Fatal(err)
	}
	id := vmID(prefix)
	sb, err := bootInitData(t, id, initData(t, text))
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console of %s:\n%s", id, sandbox.ConsoleTail(sb.VM.ConsoleLog(), 60))
		}
		if err := sb.Close(context.Background()); err != nil {
			t.Errorf("close sandbox: %v", err)
		}
	})
	return sb
}

// A debugging baseline (sandbox.decision_log) lets the host read the decision log: it holds
// the allowed and the denied requests with the policy's reasons, and none of their content.
func TestDecisionLogDebugPolicy(t *testing.T) {
	data := policies.Data{Sandbox: policies.Sandbox{StorageDrivers: []string{"virtiofs"}, DecisionLog: true}}
	sb := bootBaseline(t, "e2e-dlog", data)
	c := ctx(t, 2*time.Minute)

	if _, err := sb.Agent.Check(c, &api.CheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	_, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "svc", ExecId: "e1",
		Process: &api.Process{Args: []string{"sh", "-c", "echo " + secretArg}, Cwd: "/", Env: []string{"TOKEN=" + secretEnv}}})
	const execReason = `container "svc" was not created under this policy`
	wantDenied(t, "ExecProcess", err, "ExecProcessRequest denied by policy: "+execReason)
	spec, err := ctl.Spec(ctl.SpecOptions{Args: []string{"sh", "-c", "echo " + secretArg},
		Env: []string{"TOKEN=" + secretEnv}, RootPath: api.SharedRootfs("web")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: "web", OciSpec: spec})
	wantDenied(t, "CreateContainer", err, "CreateContainerRequest denied by policy: ")

	r, err := sb.Agent.ReadDecisionLog(c, &api.ReadDecisionLogRequest{})
	if err != nil {
		t.Fatalf("ReadDecisionLog: %v", err)
	}
	log := string(r.GetData())
	t.Logf("decision log (%d dropped):\n%s", r.GetDropped(), log)
	for _, secret := range []string{secretArg, secretEnv, "TOKEN"} {
		if strings.Contains(log, secret) {
			t.Errorf("the decision log holds request content %q", secret)
		}
	}
	byMethod := map[string]policy.LogEntry{}
	for _, line := range strings.Split(strings.TrimSuffix(log, "\n"), "\n") {
		var e policy.LogEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q is not a decision: %v", line, err)
		}
		byMethod[e.Method] = e
	}
	if e := byMethod["Check"]; !e.Allow || e.Rule != "CheckRequest" {
		t.Errorf("Check entry %+v, want allowed", e)
	}
	if e := byMethod["ExecProcess"]; e.Allow || e.Reason != execReason || e.ContainerID != "svc" || e.ExecID != "e1" {
		t.Errorf("ExecProcess entry %+v, want denied with %q, container svc, exec e1", e, execReason)
	}
	if e := byMethod["CreateContainer"]; e.Allow || e.Reason == "" || e.ContainerID != "web" {
		t.Errorf("CreateContainer entry %+v, want denied with a reason", e)
	}
	if e := byMethod["ReadDecisionLog"]; !e.Allow {
		t.Errorf("ReadDecisionLog entry %+v, want allowed", e)
	}
	// max_bytes keeps the newest lines: the read just made is the last one.
	r, err = sb.Agent.ReadDecisionLog(c, &api.ReadDecisionLogRequest{MaxBytes: 512})
	if err != nil || !strings.Contains(string(r.GetData()), `"method":"ReadDecisionLog"`) || len(r.GetData()) > 512 || r.GetDropped() == 0 {
		t.Errorf("ReadDecisionLog(max_bytes 512): %q, dropped %d, %v", r.GetData(), r.GetDropped(), err)
	}
}

// The baseline without sandbox.decision_log refuses ReadDecisionLog, with its reason.
func TestDecisionLogBaselineDenies(t *testing.T) {
	data := policies.Data{Sandbox: policies.Sandbox{StorageDrivers: []string{"virtiofs"}}}
	sb := bootBaseline(t, "e2e-dlogoff", data)
	c := ctx(t, 2*time.Minute)
	_, err := sb.Agent.ReadDecisionLog(c, &api.ReadDecisionLogRequest{})
	wantDenied(t, "ReadDecisionLog", err,
		"ReadDecisionLogRequest denied by policy: the policy does not let the host read the decision log")
	if r, err := sb.Agent.Check(c, &api.CheckRequest{}); err != nil || r.GetStatus() != api.CheckResponse_SERVING {
		t.Fatalf("after the refusal the agent no longer serves: %v %v", r, err)
	}
}
