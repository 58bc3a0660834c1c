package server

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/container"
	"github.com/veil-runtime/veil/policy"
)

// checkIDs validates a container id and an exec id (empty for the init process).
func checkIDs(containerID, execID string) error {
	if err := container.ValidateID("container_id", containerID); err != nil {
		return err
	}
	if execID == "" {
		return nil
	}
	return container.ValidateID("exec_id", execID)
}

// CreateContainer mounts the request's storages and creates the container from its OCI spec,
// enforcing the policy decision's obligations (obligations.go).
func (s *Server) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.Empty, error) {
	ctx, err := createObligations(ctx)
	if err != nil {
		return nil, err
	}
	if spec, ok := policy.SpecFrom(ctx); ok { // the spec the policy judged, decoded once
		err = s.containers.CreateSpec(ctx, req.GetContainerId(), spec, req.GetStdin(), req.GetStorages())
	} else {
		err = s.containers.Create(ctx, req.GetContainerId(), req.GetOciSpec(), req.GetStdin(), req.GetStorages())
	}
	if err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// StartContainer starts the init process of a created container.
func (s *Server) StartContainer(ctx context.Context, req *api.StartContainerRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), ""); err != nil {
		return nil, err
	}
	if err := s.containers.Start(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// RemoveContainer stops the container (SIGKILL after timeout_ms) and deletes it.
func (s *Server) RemoveContainer(ctx context.Context, req *api.RemoveContainerRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), ""); err != nil {
		return nil, err
	}
	timeout := time.Duration(req.GetTimeoutMs()) * time.Millisecond
	if err := s.containers.Remove(ctx, req.GetContainerId(), timeout); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// StatsContainer returns the container's cgroup statistics.
func (s *Server) StatsContainer(ctx context.Context, req *api.StatsContainerRequest) (*api.StatsContainerResponse, error) {
	if err := checkIDs(req.GetContainerId(), ""); err != nil {
		return nil, err
	}
	return s.containers.Stats(ctx, req.GetContainerId())
}

// PauseContainer freezes the container.
func (s *Server) PauseContainer(ctx context.Context, req *api.PauseContainerRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), ""); err != nil {
		return nil, err
	}
	if err := s.containers.Pause(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// ResumeContainer thaws a paused container.
func (s *Server) ResumeContainer(ctx context.Context, req *api.ResumeContainerRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), ""); err != nil {
		return nil, err
	}
	if err := s.containers.Resume(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}

// UpdateContainer changes the container's cgroup limits.
func (s *Server) UpdateContainer(ctx context.Context, req *api.UpdateContainerRequest) (*api.Empty, error) {
	if err := checkIDs(req.GetContainerId(), ""); err != nil {
		return nil, err
	}
	if req.GetResources() == nil {
		return nil, fmt.Errorf("resources are missing: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.containers.Update(ctx, req.GetContainerId(), req.GetResources()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}
