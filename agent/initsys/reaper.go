package initsys

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// reaper waits for every child of init (the agent and every orphan reparented to PID 1) so
// that none stays a zombie, and reports the agent's exit.
type reaper struct {
	ctx   context.Context
	agent int // pid of the agent; 0 for none
	// agentExit receives the agent's wait status once.
	agentExit chan unix.WaitStatus
	// idle receives a value when a pass finds no child left.
	idle chan struct{}
	// poke asks for a pass without a SIGCHLD.
	poke chan struct{}
}

func newReaper(ctx context.Context, agent int) *reaper {
	return &reaper{
		ctx:       ctx,
		agent:     agent,
		agentExit: make(chan unix.WaitStatus, 1),
		idle:      make(chan struct{}, 1),
		poke:      make(chan struct{}, 1),
	}
}

// run reaps on every SIGCHLD (and poke) forever.
func (r *reaper) run(sigchld <-chan os.Signal) {
	for {
		r.reapAll()
		select {
		case <-sigchld:
		case <-r.poke:
		}
	}
}

// reapAll collects every child that has ended.
func (r *reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			select {
			case r.idle <- struct{}{}:
			default:
			}
			return
		case err != nil:
			log.G(r.ctx).WithError(err).Error("wait4")
			return
		case pid == 0:
			return // children left, none ended
		}
		log.G(r.ctx).Debugf("reaped pid %d: %s", pid, describeStatus(ws))
		if pid == r.agent {
			r.agentExit <- ws
		}
	}
}

// waitNoChildren reports whether every child was reaped within timeout.
func (r *reaper) waitNoChildren(timeout time.Duration) bool {
	select { // forget an idle pass from before
	case <-r.idle:
	default:
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r.poke <- struct{}{}:
		default:
		}
		select {
		case <-r.idle:
			return true
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}
