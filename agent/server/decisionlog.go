package server

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/agent/api"
)

// DecisionLog is the policy engine's log of decisions (policy.DecisionLog is one): JSON
// lines, oldest first, that never hold a request's content.
type DecisionLog interface {
	io.WriterTo
	// Len returns the number of lines held and the number dropped so far.
	Len() (held int, dropped uint64)
}

// SetDecisionLog gives ReadDecisionLog the log to return. The agent sets it before serving,
// to the log that every policy engine it builds records in.
func (s *Server) SetDecisionLog(l DecisionLog) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decisions = l
}

// ReadDecisionLog returns the policy's decision log. The policy interceptor judged the
// request first, so it runs only when the installed policy lets the host read the log (the
// confidential baseline does only for a pod whose policy data enables it). With max_bytes the
// reply keeps the newest whole lines that fit, and counts the others as dropped.
func (s *Server) ReadDecisionLog(ctx context.Context, req *api.ReadDecisionLogRequest) (*api.ReadDecisionLogResponse, error) {
	s.mu.Lock()
	l := s.decisions
	s.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("ReadDecisionLog: this agent keeps no decision log: %w", errdefs.ErrFailedPrecondition)
	}
	_, dropped := l.Len()
	var buf bytes.Buffer
	if _, err := l.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("ReadDecisionLog: %w", err)
	}
	data, cut := newestLines(buf.Bytes(), req.GetMaxBytes())
	return &api.ReadDecisionLogResponse{Data: data, Dropped: dropped + cut}, nil
}

// newestLines returns the newest whole lines of data (newline-terminated lines, oldest
// first) that fit in max bytes (0: all of them) and the number of lines left out.
func newestLines(data []byte, max uint64) ([]byte, uint64) {
	var cut uint64
	for max > 0 && uint64(len(data)) > max {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil, cut + 1
		}
		data = data[i+1:]
		cut++
	}
	return data, cut
}
