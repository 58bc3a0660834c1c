package task

import (
	"context"
	"errors"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/pod"
)

// vmDeathStatus is the exit status of processes that were running when their VM died:
// 128 + SIGKILL, as containerd reports for a task whose shim died.
const vmDeathStatus = 137

// podRef is the shim's pod and the goroutines that follow it.
type podRef struct {
	pod    *pod.Pod
	cancel context.CancelFunc
	done   chan struct{} // closed when the event loop ended
	vmDead chan struct{} // closed when the VM exited on its own

	guestPull bool // the runtime's guest_pull: containers' images are pulled in the guest
}

// dead reports whether the VM exited on its own (killed, crashed, powered off).
func (pr *podRef) dead() bool {
	select {
	case <-pr.vmDead:
		return true
	default:
		return false
	}
}

// teardownCtx is the context for talking to the agent while tearing down: already done
// when the VM is dead, so that no call waits for an agent that is gone.
func (pr *podRef) teardownCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = context.WithoutCancel(ctx)
	if pr.dead() {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		return ctx, cancel
	}
	return context.WithTimeout(ctx, agentTimeout)
}

func (pr *podRef) stop() {
	pr.cancel()
	<-pr.done
}

// watchPod starts the agent event loop and the VM watch of a new pod.
func (s *Service) watchPod(p *pod.Pod) *podRef {
	ctx, cancel := context.WithCancel(context.WithoutCancel(s.ctx))
	pr := &podRef{pod: p, cancel: cancel, done: make(chan struct{}), vmDead: make(chan struct{})}
	vmExited := pr.vmDead
	go func() {
		err := p.Sandbox.VM.Wait(ctx)
		if ctx.Err() != nil {
			return
		}
		log.G(ctx).WithError(err).WithField("vm", p.VMID).Warn("sandbox VM exited")
		close(vmExited)
		s.vmDied()
	}()
	go func() {
		defer close(pr.done)
		s.eventLoop(ctx, p.Sandbox.Agent, vmExited)
	}()
	return pr
}

// eventLoop long-polls the agent for exit and OOM events until ctx ends or the VM exits.
func (s *Service) eventLoop(ctx context.Context, agent api.AgentService, vmExited <-chan struct{}) {
	for {
		e, err := agent.GetEvent(ctx, &api.GetEventRequest{})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			select {
			case <-vmExited:
				return
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				log.G(ctx).WithError(err).Debug("agent GetEvent")
			}
			continue
		}
		s.handleEvent(ctx, e)
	}
}

func (s *Service) handleEvent(ctx context.Context, e *api.Event) {
	switch e.GetType() {
	case api.Event_OOM:
		s.send(&eventstypes.TaskOOM{ContainerID: e.GetContainerId()})
	case api.Event_EXIT:
		_, p, err := s.getProcess(e.GetContainerId(), e.GetExecId())
		if err != nil {
			log.G(ctx).WithError(err).Debug("exit event of an unknown process")
			return
		}
		at := time.Unix(0, e.GetTimestampUnixNano())
		if e.GetTimestampUnixNano() == 0 {
			at = time.Now()
		}
		// The exit is reported once the process's output is in containerd's FIFOs: a client
		// such as ctr closes its FIFO readers as soon as it learns of the exit (cio's Cancel
		// in Task.Delete), so output still on its way from the guest would be lost. The
		// wait is bounded, and runs beside the event loop so other events are not held up.
		go func() {
			if p.io != nil && !p.io.wait(drainTimeout) {
				log.G(ctx).WithField("process", p.id()).Warn("output not drained within the bound; reporting the exit anyway")
			}
			s.exited(p, uint32(e.GetExitStatus()), at)
		}()
	}
}

// exited records a process's exit and publishes TaskExit, once.
func (s *Service) exited(p *process, status uint32, at time.Time) {
	if !p.setExited(status, at) {
		return
	}
	pid, _, _, _ := p.snapshot()
	s.send(&eventstypes.TaskExit{
		ContainerID: p.cid, ID: p.id(), Pid: pid, ExitStatus: status, ExitedAt: timestamppb.New(at),
	})
}

// vmDied ends every process still running: the VM is gone, and them with it. Execs first,
// so that the init process's exit is the last one containerd sees.
func (s *Service) vmDied() {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	now := time.Now()
	for _, c := range cs {
		ps := c.all()
		for _, p := range ps[1:] {
			s.exited(p, vmDeathStatus, now)
		}
		s.exited(ps[0], vmDeathStatus, now)
	}
}

// send queues an event for containerd.
func (s *Service) send(e any) {
	select {
	case s.events <- e:
	case <-s.shutdown.Done():
	}
}

// forward publishes the queued events in order, and the remaining ones at shutdown.
func (s *Service) forward() {
	ctx := context.WithoutCancel(s.ctx)
	defer s.publisher.Close()
	publish := func(e any) {
		if err := s.publisher.Publish(ctx, runtime.GetTopic(e), e); err != nil {
			log.G(ctx).WithError(err).Error("publish event")
		}
	}
	for {
		select {
		case e := <-s.events:
			publish(e)
		case <-s.shutdown.Done():
			for {
				select {
				case e := <-s.events:
					publish(e)
				default:
					return
				}
			}
		}
	}
}
