package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
)

func TestReadDecisionLog(t *testing.T) {
	s := newRootedServer(t)
	ctx := context.Background()
	// Without a log (never the case in the agent, which sets one before serving).
	if _, err := s.ReadDecisionLog(ctx, &api.ReadDecisionLogRequest{}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("ReadDecisionLog without a log = %v, want failed precondition", err)
	}
	l := policy.NewDecisionLog(0)
	s.SetDecisionLog(l)
	r, err := s.ReadDecisionLog(ctx, &api.ReadDecisionLogRequest{})
	if err != nil || len(r.GetData()) != 0 || r.GetDropped() != 0 {
		t.Fatalf("empty log: %v, %v", r, err)
	}
	for _, m := range []string{"Check", "ExecProcess", "CopyFile"} {
		l.Add(policy.LogEntry{Method: m, Rule: m + "Request", Allow: m == "Check"})
	}
	r, err = s.ReadDecisionLog(ctx, &api.ReadDecisionLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(r.GetData()), "\n")
	if len(lines) != 4 || lines[3] != "" || r.GetDropped() != 0 ||
		!strings.Contains(lines[0], `"method":"Check"`) || !strings.Contains(lines[2], `"method":"CopyFile"`) {
		t.Fatalf("log = %q, dropped %d; want three lines, oldest first", r.GetData(), r.GetDropped())
	}

	// max_bytes keeps the newest whole lines that fit and counts the rest as dropped.
	for _, tc := range []struct {
		max         uint64
		want        string
		wantDropped uint64
	}{
		{uint64(len(lines[2])), lines[2], 2},
		{uint64(len(lines[1]) + len(lines[2]) + 1), lines[1] + lines[2], 1},
		{uint64(len(r.GetData())), string(r.GetData()), 0},
		{1, "", 3},
	} {
		got, err := s.ReadDecisionLog(ctx, &api.ReadDecisionLogRequest{MaxBytes: tc.max})
		if err != nil || string(got.GetData()) != tc.want || got.GetDropped() != tc.wantDropped {
			t.Errorf("max_bytes %d: %q dropped %d (%v), want %q dropped %d",
				tc.max, got.GetData(), got.GetDropped(), err, tc.want, tc.wantDropped)
		}
	}
}
