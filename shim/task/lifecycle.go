package task

import (
	"context"
	"errors"
	"fmt"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/veil-runtime/veil/agent/api"
)

// drainTimeout bounds how long Delete waits for a process's output to be relayed after it
// exited (a daemon it left behind may hold the streams open).
const drainTimeout = 5 * time.Second

// Start starts a task's init process, or an exec'd process.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if _, st, _, _ := p.snapshot(); st != task.Status_CREATED {
		return nil, fmt.Errorf("start %s: it is %s: %w", p.id(), st, errdefs.ErrFailedPrecondition)
	}
	agent := c.agent()
	if r.ExecID == "" {
		if _, err := agent.StartContainer(ctx, &api.StartContainerRequest{ContainerId: c.id}); err != nil {
			return nil, fmt.Errorf("start container %s: %w", c.id, err)
		}
	} else {
		if _, err := agent.ExecProcess(ctx, &api.ExecProcessRequest{
			ContainerId: c.id, ExecId: r.ExecID, Process: p.execSpec,
		}); err != nil {
			return nil, fmt.Errorf("exec %s in %s: %w", r.ExecID, c.id, err)
		}
		p.setPID(s.guestPID(ctx, c, r.ExecID))
	}
	p.setStatus(task.Status_RUNNING)
	p.io.start(ctx, p.agentProcess(c))
	pid, _, _, _ := p.snapshot()
	if r.ExecID == "" {
		s.send(&eventstypes.TaskStart{ContainerID: c.id, Pid: pid})
	} else {
		s.send(&eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: r.ExecID, Pid: pid})
	}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

// Delete removes an exited (or never started) process; for the init process, the container
// in the guest and its mounts on the host, and the VM with the pod's last container.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	pid, st, status, at := p.snapshot()
	if st == task.Status_RUNNING || st == task.Status_PAUSED {
		return nil, fmt.Errorf("delete %s: it is %s: %w", p.id(), st, errdefs.ErrFailedPrecondition)
	}
	if st == task.Status_STOPPED && !c.pod.dead() && !p.io.wait(drainTimeout) {
		log.G(ctx).WithField("task", p.id()).Warn("output not drained before delete")
	}
	p.io.close()
	if r.ExecID != "" {
		c.mu.Lock()
		delete(c.execs, r.ExecID)
		c.mu.Unlock()
		return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: status, ExitedAt: timestamppb.New(at)}, nil
	}
	for _, e := range c.all()[1:] {
		e.io.close()
	}
	actx, cancel := c.pod.teardownCtx(ctx)
	if _, err := c.agent().RemoveContainer(actx, &api.RemoveContainerRequest{ContainerId: c.id, TimeoutMs: 2000}); err != nil {
		log.G(ctx).WithError(err).WithField("task", c.id).Debug("RemoveContainer")
	}
	cancel()
	if err := c.pod.pod.RemoveContainer(c.id); err != nil {
		return nil, fmt.Errorf("delete %s: %w", c.id, err)
	}
	s.mu.Lock()
	delete(s.containers, c.id)
	last := len(s.containers) == 0
	s.mu.Unlock()
	if at.IsZero() {
		at = time.Now()
	}
	if last {
		s.closePod(ctx)
	}
	s.send(&eventstypes.TaskDelete{ContainerID: c.id, Pid: pid, ExitStatus: status, ExitedAt: timestamppb.New(at)})
	return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: status, ExitedAt: timestamppb.New(at)}, nil
}

// State reports a process's status and stdio.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	pid, st, status, at := p.snapshot()
	resp := &taskAPI.StateResponse{
		ID: p.id(), ExecID: r.ExecID, Bundle: c.bundle, Pid: pid, Status: st,
		Stdin: p.stdio.Stdin, Stdout: p.stdio.Stdout, Stderr: p.stdio.Stderr, Terminal: p.stdio.Terminal,
		ExitStatus: status,
	}
	if st == task.Status_STOPPED {
		resp.ExitedAt = timestamppb.New(at)
	}
	return resp, nil
}

// Kill signals a process (or, with All, every process of the container).
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptypb.Empty, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if _, st, _, _ := p.snapshot(); st == task.Status_STOPPED && !r.All {
		return nil, fmt.Errorf("kill %s: process already finished: %w", p.id(), errdefs.ErrNotFound)
	}
	sigkill := r.Signal == uint32(unix.SIGKILL)
	actx, cancel := ctx, context.CancelFunc(func() {})
	if sigkill {
		actx, cancel = context.WithTimeout(ctx, agentTimeout)
	}
	defer cancel()
	_, err = c.agent().SignalProcess(actx, &api.SignalProcessRequest{
		ContainerId: c.id, ExecId: r.ExecID, Signal: r.Signal, All: r.All,
	})
	if err != nil && sigkill && ctx.Err() == nil && agentLost(err) {
		// SIGKILL must work on a pod whose guest stopped answering (hung, frozen): the VM is
		// stopped, and with it every process of the pod exits (137).
		log.G(ctx).WithError(err).WithField("vm", c.pod.pod.VMID).
			Warn("kill: the agent does not answer: stopping the pod's VM")
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), agentTimeout)
		defer scancel()
		if serr := c.pod.pod.Sandbox.VM.Stop(sctx); serr != nil {
			return nil, fmt.Errorf("kill %s: the agent does not answer (%v), and stopping the VM failed: %w", p.id(), err, serr)
		}
		return empty, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kill %s with signal %d: %w", p.id(), r.Signal, err)
	}
	return empty, nil
}

// agentLost reports whether an agent call failed because the agent did not answer (the
// deadline passed, or the connection to it is gone), not because it refused.
func agentLost(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ttrpc.ErrClosed) {
		return true
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Unavailable:
		return true
	}
	return false
}

// Wait blocks until the process exited and returns its status.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	_, _, status, at := p.snapshot()
	return &taskAPI.WaitResponse{ExitStatus: status, ExitedAt: timestamppb.New(at)}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		p.io.closeStdin()
	}
	return empty, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptypb.Empty, error) {
	c, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	_, err = c.agent().TtyWinResize(ctx, &api.TtyWinResizeRequest{
		ContainerId: c.id, ExecId: r.ExecID, Rows: r.Height, Cols: r.Width,
	})
	if err != nil {
		return nil, fmt.Errorf("resize terminal of %s: %w", p.id(), err)
	}
	return empty, nil
}
