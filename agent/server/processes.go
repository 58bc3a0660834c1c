package server

import (
	"context"
	"fmt"
	"syscall"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/agent/api"
)

// ExecProcess starts another process in a running container.
func (s *Server) ExecProcess(ctx context.Context, req *api.ExecProcessRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	if req.GetExecId() == "" {
		return nil, fmt.Errorf("exec_id is empty: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.containers.Exec(ctx, req.GetContainerId(), req.GetExecId(), req.GetProcess()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// SignalProcess sends a signal to one process of a container, or to all of them.
func (s *Server) SignalProcess(ctx context.Context, req *api.SignalProcessRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	if req.GetSignal() == 0 || req.GetSignal() > 64 {
		return nil, fmt.Errorf("signal %d is out of range 1-64: %w", req.GetSignal(), errdefs.ErrInvalidArgument)
	}
	sig := syscall.Signal(req.GetSignal())
	if err := s.containers.Signal(ctx, req.GetContainerId(), req.GetExecId(), sig, req.GetAll()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// WaitProcess waits until a process has exited and returns its status.
func (s *Server) WaitProcess(ctx context.Context, req *api.WaitProcessRequest) (*api.WaitProcessResponse, error) {
	if err := checkIDs(req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	return s.containers.Wait(ctx, req.GetContainerId(), req.GetExecId())
}

// ListProcesses returns the processes of a container.
func (s *Server) ListProcesses(ctx context.Context, req *api.ListProcessesRequest) (*api.ListProcessesResponse, error) {
	if err := checkIDs(req.GetContainerId(), ""); err != nil {
		return nil, err
	}
	procs, err := s.containers.ListProcesses(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &api.ListProcessesResponse{Processes: procs}, nil
}
