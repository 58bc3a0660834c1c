package server

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
)

// decisionCtx returns the context a handler gets from the policy interceptor under a policy
// whose CreateContainer result is rule.
func decisionCtx(t *testing.T, rule string) context.Context {
	t.Helper()
	e, err := policy.New("package agent_policy\n\nCreateContainerRequest := " + rule + "\n")
	if err != nil {
		t.Fatal(err)
	}
	var got context.Context
	payload, _ := proto.Marshal(&api.CreateContainerRequest{ContainerId: "c1"})
	_, err = policy.Interceptor(e)(context.Background(), func(v any) error { return proto.Unmarshal(payload, v.(proto.Message)) },
		&ttrpc.UnaryServerInfo{FullMethod: "/" + api.ServiceName + "/CreateContainer"},
		func(ctx context.Context, _ func(any) error) (any, error) { got = ctx; return &api.Empty{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestCreateObligations: sealed_mounts is read; an obligation the agent does not know, or of
// the wrong shape, fails the request rather than being dropped.
func TestCreateObligations(t *testing.T) {
	if _, err := createObligations(decisionCtx(t, `{"allow": true, "obligations": {"sealed_mounts": ["/etc/certs"]}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := createObligations(decisionCtx(t, `true`)); err != nil {
		t.Fatal(err)
	}
	if _, err := createObligations(context.Background()); err != nil {
		t.Fatal(err)
	}
	for rule, want := range map[string]string{
		`{"allow": true, "obligations": {"wipe_disk": true}}`:       `obligation "wipe_disk", which this agent cannot enforce`,
		`{"allow": true, "obligations": {"sealed_mounts": "/etc"}}`: "is not a list of paths",
		`{"allow": true, "obligations": {"sealed_mounts": [1]}}`:    "want paths",
	} {
		_, err := createObligations(decisionCtx(t, rule))
		if err == nil || !strings.Contains(err.Error(), want) || !errdefs.IsFailedPrecondition(err) {
			t.Errorf("%s: %v, want %q", rule, err, want)
		}
	}
}
