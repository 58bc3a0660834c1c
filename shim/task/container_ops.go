package task

import (
	"context"
	"fmt"

	"github.com/containerd/cgroups/v3/cgroup2/stats"
	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/veil-runtime/veil/agent/api"
)

// Exec registers a new process in a container; Start runs it.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*emptypb.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if _, st, _, _ := c.init.snapshot(); st == task.Status_STOPPED {
		return nil, fmt.Errorf("exec in %s: the container has exited: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	v, err := typeurl.UnmarshalAny(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("exec %s: process spec: %w: %w", r.ExecID, err, errdefs.ErrInvalidArgument)
	}
	sp, ok := v.(*specs.Process)
	if !ok {
		return nil, fmt.Errorf("exec %s: spec is a %T, not an OCI process: %w", r.ExecID, v, errdefs.ErrInvalidArgument)
	}
	c.mu.Lock()
	_, dup := c.execs[r.ExecID]
	c.mu.Unlock()
	if dup {
		return nil, fmt.Errorf("exec %s in %s: %w", r.ExecID, c.id, errdefs.ErrAlreadyExists)
	}
	p := newProcess(c.id, r.ExecID, stdioPaths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal})
	sp.Terminal = r.Terminal
	p.execSpec = agentProcess(sp, r.Stdin != "")
	if p.io, err = openIO(ctx, namespaceOf(ctx), c.id, p.stdio); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.execs[r.ExecID] = p
	c.mu.Unlock()
	s.send(&eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return empty, nil
}

// Pids lists the container's processes (guest pids), naming exec'd ones.
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	resp, err := c.agent().ListProcesses(ctx, &api.ListProcessesRequest{ContainerId: c.id})
	if err != nil {
		return nil, fmt.Errorf("list processes of %s: %w", c.id, err)
	}
	out := &taskAPI.PidsResponse{}
	for _, p := range resp.GetProcesses() {
		info := &task.ProcessInfo{Pid: p.GetPid()}
		if p.GetExecId() != "" {
			a, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: p.GetExecId()})
			if err == nil {
				info.Info = a
			}
		}
		out.Processes = append(out.Processes, info)
	}
	return out, nil
}

// Pause freezes every process of the container.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptypb.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if _, err := c.agent().PauseContainer(ctx, &api.PauseContainerRequest{ContainerId: c.id}); err != nil {
		return nil, fmt.Errorf("pause %s: %w", c.id, err)
	}
	c.init.setStatus(task.Status_PAUSED)
	s.send(&eventstypes.TaskPaused{ContainerID: c.id})
	return empty, nil
}

// Resume thaws the container.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptypb.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	if _, err := c.agent().ResumeContainer(ctx, &api.ResumeContainerRequest{ContainerId: c.id}); err != nil {
		return nil, fmt.Errorf("resume %s: %w", c.id, err)
	}
	c.init.setStatus(task.Status_RUNNING)
	s.send(&eventstypes.TaskResumed{ContainerID: c.id})
	return empty, nil
}

// Update changes the container's cgroup limits in the guest.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptypb.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	v, err := typeurl.UnmarshalAny(r.Resources)
	if err != nil {
		return nil, fmt.Errorf("update %s: resources: %w: %w", c.id, err, errdefs.ErrInvalidArgument)
	}
	res, ok := v.(*specs.LinuxResources)
	if !ok {
		return nil, fmt.Errorf("update %s: resources are a %T, not OCI Linux resources: %w", c.id, v, errdefs.ErrInvalidArgument)
	}
	_, err = c.agent().UpdateContainer(ctx, &api.UpdateContainerRequest{ContainerId: c.id, Resources: agentResources(res)})
	if err != nil {
		return nil, fmt.Errorf("update %s: %w", c.id, err)
	}
	return empty, nil
}

// Stats returns the container's cgroup v2 figures from the guest.
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, err
	}
	st, err := c.agent().StatsContainer(ctx, &api.StatsContainerRequest{ContainerId: c.id})
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", c.id, err)
	}
	m := &stats.Metrics{
		Pids: &stats.PidsStat{Current: st.GetPidsCurrent(), Limit: st.GetPidsLimit()},
		CPU: &stats.CPUStat{UsageUsec: st.GetCpuUsageNs() / 1000, UserUsec: st.GetCpuUserNs() / 1000,
			SystemUsec: st.GetCpuSystemNs() / 1000},
		Memory: &stats.MemoryStat{Usage: st.GetMemoryUsageBytes(), UsageLimit: st.GetMemoryLimitBytes(),
			MaxUsage: st.GetMemoryMaxUsageBytes()},
		MemoryEvents: &stats.MemoryEvents{OomKill: st.GetOomKills()},
	}
	a, err := typeurl.MarshalAnyToProto(m)
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", c.id, err)
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}
