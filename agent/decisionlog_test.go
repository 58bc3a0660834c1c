package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
)

// debugPolicy is testPolicy that also lets the host read the decision log.
const debugPolicy = testPolicy + "\ndefault ReadDecisionLogRequest := true\n"

// The agent records every decision of its policy, and of the policy SetPolicy installs, in
// one log that ReadDecisionLog returns, without the requests' content.
func TestRunDecisionLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, done := startAgentWithPolicy(t, ctx, debugPolicy)

	if _, err := c.Check(ctx, &api.CheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	const secret = "secret-file-content"
	if _, err := c.CopyFile(ctx, &api.CopyFileRequest{Path: "/run/veil/secret-path", Data: []byte(secret)}); err == nil {
		t.Fatal("CopyFile outside /run/veil/shared/ allowed")
	}
	if _, err := c.SetPolicy(ctx, &api.SetPolicyRequest{Policy: policies.AllowAll}); err != nil {
		t.Fatalf("SetPolicy(allow-all): %v", err)
	}
	if _, err := c.Version(ctx, &api.VersionRequest{}); err != nil {
		t.Fatalf("Version under allow-all: %v", err)
	}
	r, err := c.ReadDecisionLog(ctx, &api.ReadDecisionLogRequest{})
	if err != nil {
		t.Fatalf("ReadDecisionLog: %v", err)
	}
	entries := decodeLog(t, r.GetData())
	var got []string
	for _, e := range entries {
		got = append(got, e.Method)
	}
	// ReadDecisionLog's own decision is made, so logged, before its handler reads the log.
	if want := "Check CopyFile SetPolicy Version ReadDecisionLog"; strings.Join(got, " ") != want {
		t.Fatalf("logged methods %q, want %q", got, want)
	}
	if e := entries[1]; e.Allow || e.Reason != "copy-file is only for /run/veil/shared/" {
		t.Fatalf("CopyFile entry %+v, want a denial with the policy's reason", e)
	}
	if strings.Contains(string(r.GetData()), secret) || strings.Contains(string(r.GetData()), "secret-path") ||
		strings.Contains(string(r.GetData()), "package agent_policy") {
		t.Fatalf("the log holds request content:\n%s", r.GetData())
	}
	if _, err := c.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	waitRun(t, done)
}

func decodeLog(t *testing.T, data []byte) []policy.LogEntry {
	t.Helper()
	var out []policy.LogEntry
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		var e policy.LogEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil || !strings.HasSuffix(line, "\n") {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}
