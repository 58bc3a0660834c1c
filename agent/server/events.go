package server

import (
	"context"

	"github.com/veil-runtime/veil/agent/api"
)

// GetEvent long-polls for the next exit or OOM event; it returns the context's error when
// the call is cancelled.
func (s *Server) GetEvent(ctx context.Context, req *api.GetEventRequest) (*api.Event, error) {
	return s.containers.NextEvent(ctx)
}
