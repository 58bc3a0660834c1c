package policy_test

import (
	"context"
	"testing"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
)

// BenchmarkStart is the policy's part of the agent's start (docs/benchmarks.md): compiling
// the allow-all policy, and compiling it and judging the host's first request (Check), which
// prepares that rule's query.
func BenchmarkStart(b *testing.B) {
	b.Run("compile", func(b *testing.B) {
		for b.Loop() {
			if _, err := policy.New(policies.AllowAll); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compile+first-check", func(b *testing.B) {
		for b.Loop() {
			e, err := policy.New(policies.AllowAll)
			if err != nil {
				b.Fatal(err)
			}
			if d, err := e.Judge(context.Background(), "Check", &api.CheckRequest{}); !d.Allow {
				b.Fatalf("Check denied: %s %v", d.Reason, err)
			}
		}
	})
}
