package container

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// LibcontainerStartLine starts the debug line that says how long libcontainer took to start a
// container's init or an exec (cloning the agent binary, running it as "init", the init's
// set-up and its exec of the process), in milliseconds.
const LibcontainerStartLine = "libcontainer started the process in"

// killWait bounds how long teardown waits for processes after SIGKILL.
const killWait = 10 * time.Second

// ctr is one container of the Manager.
type ctr struct {
	id      string
	lc      *libcontainer.Container
	unmount func() error // undoes the storages, root and bind sources (PrepareContainer)
	events  *eventQueue

	mu       sync.Mutex
	procs    map[string]*process // by exec id; "" is the init process
	removing bool
	oomWatch bool
}

// cleanups runs undo steps in reverse order of their addition.
type cleanups []func() error

func (u *cleanups) add(f func() error) { *u = append(*u, f) }

func (u *cleanups) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		_ = (*u)[i]()
	}
	*u = nil
}

// destroy kills whatever is left of lc and removes its state and cgroup.
func destroy(lc *libcontainer.Container) error {
	if st, err := lc.Status(); err == nil && st == libcontainer.Paused {
		_ = lc.Resume()
	}
	_ = lc.Signal(unix.SIGKILL)
	return lc.Destroy()
}

// start starts p (the init process when its exec id is empty) and registers it. On success
// undo gets the steps that kill and reap it.
func (c *ctr) start(p *process, undo *cleanups) error {
	var err error
	began := time.Now()
	if p.execID == "" {
		err = c.lc.Start(p.lc)
	} else {
		err = c.lc.Run(p.lc)
	}
	// tests/bench reads this line: libcontainer's share of a start or an exec.
	log.L.WithFields(log.Fields{"container": c.id, "exec": p.execID}).
		Debugf("%s %.1f ms", LibcontainerStartLine, float64(time.Since(began).Microseconds())/1e3)
	if err != nil {
		p.closeAll()
		return fmt.Errorf("start process: %w", err)
	}
	if err := p.afterStart(); err != nil {
		_ = p.lc.Signal(unix.SIGKILL)
		_, _ = p.lc.Wait()
		p.closeAll()
		return err
	}
	c.mu.Lock()
	c.procs[p.execID] = p
	c.mu.Unlock()
	go p.wait(c.id, c.events)
	undo.add(func() error {
		_ = p.lc.Signal(unix.SIGKILL)
		<-p.done
		p.closeAll()
		return nil
	})
	return nil
}

// process returns the process execID of c.
func (c *ctr) process(execID string) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.procs[execID]
	if !ok || p == nil {
		return nil, fmt.Errorf("container %s has no process with exec_id %q: %w", c.id, execID, errdefs.ErrNotFound)
	}
	return p, nil
}

// processes returns a snapshot of c's processes.
func (c *ctr) processes() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := make([]*process, 0, len(c.procs))
	for _, p := range c.procs {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (c *ctr) beginRemove() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing {
		return false
	}
	c.removing = true
	return true
}

func (c *ctr) endRemove() {
	c.mu.Lock()
	c.removing = false
	c.mu.Unlock()
}

// stop ends every process of c: SIGTERM to init and up to timeout for it to exit, then
// SIGKILL to all, and waits until each process has been reaped.
func (c *ctr) stop(ctx context.Context, timeout time.Duration) error {
	if st, err := c.lc.Status(); err == nil && st == libcontainer.Paused {
		if err := c.lc.Resume(); err != nil {
			return fmt.Errorf("resume paused container: %w", err)
		}
	}
	init, err := c.process("")
	if err != nil {
		return err
	}
	if timeout > 0 && !init.exited() {
		_ = c.lc.Signal(unix.SIGTERM)
		t := time.NewTimer(timeout)
		select {
		case <-init.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	c.killAll(unix.SIGKILL)
	deadline := time.NewTimer(killWait)
	defer deadline.Stop()
	for _, p := range c.processes() {
		select {
		case <-p.done:
		case <-deadline.C:
			return fmt.Errorf("process %q did not exit %s after SIGKILL", p.execID, killWait)
		}
	}
	return nil
}

// killAll sends sig to every process of c (init, exec'd and their children).
func (c *ctr) killAll(sig unix.Signal) {
	if init, err := c.process(""); err == nil && !init.exited() {
		_ = c.lc.Signal(sig)
	}
	pids, _ := c.lc.Processes()
	for _, pid := range pids {
		_ = unix.Kill(pid, sig)
	}
	for _, p := range c.processes() {
		if !p.exited() {
			_ = p.lc.Signal(sig)
		}
	}
}

// teardown destroys c's libcontainer state and cgroup, closes all stdio and unmounts
// storages, reporting every failure.
func (c *ctr) teardown() error {
	var errs []error
	if err := destroy(c.lc); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.processes() {
		p.closeAll()
	}
	if err := c.unmount(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
