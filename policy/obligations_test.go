package policy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
)

// TestObligations: an allowed decision carries the rule's "obligations" to the handler
// (DecisionFrom); a denial carries none; an "obligations" that is not an object denies.
func TestObligations(t *testing.T) {
	e := mustEngine(t, `package agent_policy

CreateContainerRequest := {"allow": true, "obligations": {"sealed_mounts": ["/etc/certs"]}} if input.request.container_id == "c1"
else := {"allow": false, "reason": "no", "obligations": {"sealed_mounts": ["/x"]}} if input.request.container_id == "c2"
else := {"allow": true, "obligations": ["/etc/certs"]}
`)
	var seen policy.Decision
	var ok bool
	call := func(id string) error {
		payload, _ := proto.Marshal(&api.CreateContainerRequest{ContainerId: id})
		handler := func(ctx context.Context, um func(any) error) (any, error) {
			seen, ok = policy.DecisionFrom(ctx)
			return &api.Empty{}, nil
		}
		_, err := policy.Interceptor(e)(context.Background(), func(v any) error { return proto.Unmarshal(payload, v.(proto.Message)) },
			&ttrpc.UnaryServerInfo{FullMethod: "/" + api.ServiceName + "/CreateContainer"}, handler)
		return err
	}
	if err := call("c1"); err != nil || !ok || !seen.Allow {
		t.Fatalf("c1: %v, %v, %+v", err, ok, seen)
	}
	if m, _ := seen.Obligations["sealed_mounts"].([]any); len(m) != 1 || m[0] != "/etc/certs" {
		t.Fatalf("obligations %v", seen.Obligations)
	}
	if _, ok := policy.DecisionFrom(context.Background()); ok {
		t.Fatal("a decision outside the interceptor")
	}
	d, _ := e.Judge(context.Background(), "CreateContainer", &api.CreateContainerRequest{ContainerId: "c2"})
	if d.Allow || d.Obligations != nil {
		t.Fatalf("denial: %+v", d)
	}
	d, _ = e.Judge(context.Background(), "CreateContainer", &api.CreateContainerRequest{ContainerId: "c3"})
	if d.Allow || !strings.Contains(d.Reason, `"obligations" is a array, want an object`) {
		t.Fatalf("obligations not an object: %+v", d)
	}
}
