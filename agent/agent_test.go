package agent

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy/policies"
)

// startAgent runs the agent on a unix socket and returns a client and Run's result.
func startAgent(t *testing.T, ctx context.Context) (api.AgentService, <-chan error) {
	return startAgentWithPolicy(t, ctx, "")
}

// startAgentWithPolicy runs the agent enforcing regoText ("" is allow-all).
func startAgentWithPolicy(t *testing.T, ctx context.Context, regoText string) (api.AgentService, <-chan error) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Listen: []string{"unix:" + sock}, StateDir: t.TempDir(), Policy: regoText})
	}()
	var conn net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial the agent: %v", err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() { _ = client.Close() })
	return api.NewAgentClient(client), done
}

func waitRun(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(2*shutdownTimeout + 5*time.Second):
		t.Fatal("Run did not return")
	}
}

// Over a real ttrpc connection: calls work, errdefs errors arrive as status codes, and
// DestroySandbox gets its reply before the agent stops.
func TestRunOverTTRPC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, done := startAgent(t, ctx)

	if resp, err := c.Check(ctx, &api.CheckRequest{}); err != nil || resp.GetStatus() != api.CheckResponse_SERVING {
		t.Fatalf("Check = %v, %v", resp, err)
	}
	for name, tc := range map[string]struct {
		call func() error
		want codes.Code
	}{
		"SetPolicy with a syntax error": {func() error { _, err := c.SetPolicy(ctx, &api.SetPolicyRequest{Policy: "x"}); return err },
			codes.InvalidArgument},
		"CopyFile outside /run/veil": {func() error {
			_, err := c.CopyFile(ctx, &api.CopyFileRequest{Path: "/etc/passwd", Data: []byte("x")})
			return err
		}, codes.InvalidArgument},
		"CopyFile with ..": {func() error {
			_, err := c.CopyFile(ctx, &api.CopyFileRequest{Path: "/run/veil/../../etc/passwd", Data: []byte("x")})
			return err
		}, codes.InvalidArgument},
		"UpdateInterface of a missing MAC": {func() error {
			_, err := c.UpdateInterface(ctx, &api.UpdateInterfaceRequest{Interface: &api.Interface{HwAddr: "02:00:5e:00:00:99"}})
			return err
		}, codes.NotFound},
	} {
		if got := status.Code(tc.call()); got != tc.want {
			t.Errorf("%s: code %v, want %v", name, got, tc.want)
		}
	}
	if _, err := c.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	waitRun(t, done)
}

func TestRunStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c, done := startAgent(t, ctx)
	if _, err := c.Version(ctx, &api.VersionRequest{}); err != nil {
		t.Fatalf("Version: %v", err)
	}
	cancel()
	waitRun(t, done)
}

func TestRunWithoutTransport(t *testing.T) {
	err := Run(context.Background(), Options{Listen: []string{"tcp:127.0.0.1:0"}, StateDir: t.TempDir()})
	if err == nil {
		t.Fatal("Run with an unknown transport succeeded")
	}
}

// testPolicy allows Check, SetPolicy and DestroySandbox, and CopyFile only below
// /run/veil/shared/; everything else is denied (no rule).
const testPolicy = `package agent_policy

default CheckRequest := true
default SetPolicyRequest := true
default DestroySandboxRequest := true

CopyFileRequest := {"allow": false, "reason": "copy-file is only for /run/veil/shared/"} if {
	not startswith(input.request.path, "/run/veil/shared/")
} else := true
`

// The policy judges every request before its handler: denials are PermissionDenied with the
// rule's reason, SetPolicy replaces the policy (or, with a syntax error, keeps the old one).
func TestRunEnforcesPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, done := startAgentWithPolicy(t, ctx, testPolicy)

	wantDenied := func(err error, msg string) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), msg) {
			t.Fatalf("error %v, want PermissionDenied saying %q", err, msg)
		}
	}
	_, err := c.CopyFile(ctx, &api.CopyFileRequest{Path: "/run/veil/x", Data: []byte("x")})
	wantDenied(err, "CopyFileRequest denied by policy: copy-file is only for /run/veil/shared/")
	_, err = c.Version(ctx, &api.VersionRequest{})
	wantDenied(err, "VersionRequest denied by policy: ")

	_, err = c.SetPolicy(ctx, &api.SetPolicyRequest{Policy: "package agent_policy\n\nVersionRequest if {\n"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "policy.rego:") {
		t.Fatalf("SetPolicy of a syntax error: %v, want InvalidArgument naming the line", err)
	}
	_, err = c.Version(ctx, &api.VersionRequest{})
	wantDenied(err, "VersionRequest denied by policy") // the old policy stays
	if _, err := c.SetPolicy(ctx, &api.SetPolicyRequest{Policy: policies.AllowAll}); err != nil {
		t.Fatalf("SetPolicy(allow-all): %v", err)
	}
	if _, err := c.Version(ctx, &api.VersionRequest{}); err != nil {
		t.Fatalf("Version after SetPolicy(allow-all): %v", err)
	}
	if _, err := c.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	waitRun(t, done)
}

func TestRunRefusesBadPolicy(t *testing.T) {
	err := Run(context.Background(), Options{Listen: []string{"unix:" + filepath.Join(t.TempDir(), "s")},
		StateDir: t.TempDir(), Policy: "package agent_policy\n\nx := \n"})
	if err == nil || !strings.Contains(err.Error(), "policy.rego:") {
		t.Fatalf("Run with a bad policy = %v, want an error naming policy.rego's line", err)
	}
}
