package policies_test

import (
	"context"
	"testing"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
)

// The baseline lets the host read the decision log only when the pod's data enables it (a
// debugging policy); allow-all always does.
func TestReadDecisionLog(t *testing.T) {
	ctx := context.Background()
	req := &api.ReadDecisionLogRequest{MaxBytes: 4096}
	const wantReason = "the policy does not let the host read the decision log (sandbox.decision_log is off)"

	for name, data := range map[string]policies.Data{"no data": {}, "pod data": testData()} {
		d, err := baselineEngine(t, data).Decide(ctx, "ReadDecisionLog", req)
		if err != nil || d.Allow || d.Reason != wantReason {
			t.Errorf("baseline, %s: allow %v reason %q (%v), want denied with %q", name, d.Allow, d.Reason, err, wantReason)
		}
		if d.Withhold {
			t.Errorf("baseline, %s: a refused ReadDecisionLog is withheld, want refused", name)
		}
	}

	data := testData()
	data.Sandbox.DecisionLog = true
	if d, err := baselineEngine(t, data).Decide(ctx, "ReadDecisionLog", req); err != nil || !d.Allow {
		t.Errorf("baseline with sandbox.decision_log: %q (%v), want allowed", d.Reason, err)
	}

	e, err := policy.New(policies.AllowAll)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := e.Decide(ctx, "ReadDecisionLog", req); err != nil || !d.Allow {
		t.Errorf("allow-all: %q (%v), want allowed", d.Reason, err)
	}
}
