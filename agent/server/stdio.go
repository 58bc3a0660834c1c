package server

import (
	"context"
	"fmt"
	"math"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/agent/api"
)

// WriteStdin writes all of the request's data to a process's stdin.
func (s *Server) WriteStdin(ctx context.Context, req *api.WriteStreamRequest) (*api.WriteStreamResponse, error) {
	if err := checkIDs(req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	n, err := s.containers.WriteStdin(ctx, req.GetContainerId(), req.GetExecId(), req.GetData())
	if err != nil {
		return nil, err
	}
	return &api.WriteStreamResponse{Len: uint32(n)}, nil
}

// CloseStdin closes a process's stdin.
func (s *Server) CloseStdin(ctx context.Context, req *api.CloseStdinRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	if err := s.containers.CloseStdin(ctx, req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// ReadStdout long-polls for a process's output.
func (s *Server) ReadStdout(ctx context.Context, req *api.ReadStreamRequest) (*api.ReadStreamResponse, error) {
	if err := checkIDs(req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	data, eof, err := s.containers.ReadStdout(ctx, req.GetContainerId(), req.GetExecId(), readLen(req))
	if err != nil {
		return nil, err
	}
	return &api.ReadStreamResponse{Data: data, Eof: eof}, nil
}

// ReadStderr long-polls for a process's error output.
func (s *Server) ReadStderr(ctx context.Context, req *api.ReadStreamRequest) (*api.ReadStreamResponse, error) {
	if err := checkIDs(req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	data, eof, err := s.containers.ReadStderr(ctx, req.GetContainerId(), req.GetExecId(), readLen(req))
	if err != nil {
		return nil, err
	}
	return &api.ReadStreamResponse{Data: data, Eof: eof}, nil
}

// readLen returns the request's len, 0 (the agent's cap) when it asks for more than an int.
func readLen(req *api.ReadStreamRequest) int {
	if uint64(req.GetLen()) > math.MaxInt32 {
		return 0
	}
	return int(req.GetLen())
}

// TtyWinResize sets the window size of a terminal process.
func (s *Server) TtyWinResize(ctx context.Context, req *api.TtyWinResizeRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	if req.GetRows() > math.MaxUint16 || req.GetCols() > math.MaxUint16 {
		return nil, fmt.Errorf("window size %dx%d exceeds %d: %w", req.GetRows(), req.GetCols(), math.MaxUint16, errdefs.ErrInvalidArgument)
	}
	err := s.containers.ResizeTerminal(ctx, req.GetContainerId(), req.GetExecId(), uint16(req.GetRows()), uint16(req.GetCols()))
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}
