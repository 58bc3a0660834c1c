package task

import (
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/task"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/stdio"
)

// process is a container's init process (execID "") or one exec'd process, as containerd
// sees it. Its exit comes from the agent's event stream, or from the VM's death.
type process struct {
	cid, execID string
	stdio       stdioPaths
	io          *hostIO
	execSpec    *api.Process // exec: what Start sends the agent

	mu         sync.Mutex
	pid        uint32
	status     task.Status
	exitStatus uint32
	exitedAt   time.Time
	exited     chan struct{} // closed by setExited
}

func newProcess(cid, execID string, paths stdioPaths) *process {
	return &process{cid: cid, execID: execID, stdio: paths, status: task.Status_CREATED, exited: make(chan struct{})}
}

// id is what containerd's events call the process: the exec id, or the container id.
func (p *process) id() string {
	if p.execID == "" {
		return p.cid
	}
	return p.execID
}

func (p *process) agentProcess(c *container) stdio.Process {
	return stdio.Process{Agent: c.agent(), ContainerID: p.cid, ExecID: p.execID}
}

// setExited records the exit once; it reports whether this call recorded it.
func (p *process) setExited(status uint32, at time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == task.Status_STOPPED {
		return false
	}
	p.status, p.exitStatus, p.exitedAt = task.Status_STOPPED, status, at
	close(p.exited)
	return true
}

func (p *process) setStatus(s task.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != task.Status_STOPPED {
		p.status = s
	}
}

func (p *process) setPID(pid uint32) {
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
}

// snapshot returns the fields State and Delete report.
func (p *process) snapshot() (pid uint32, status task.Status, exitStatus uint32, exitedAt time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid, p.status, p.exitStatus, p.exitedAt
}

// container is one task: its init process, its execs and where its files are.
type container struct {
	id     string
	bundle string
	rootfs string // guest path of the root filesystem
	// storages are the CreateContainer storages: the image_guest_pull one when the guest
	// pulls the image, none when the root filesystem is shared.
	storages []*api.Storage
	pod      *podRef
	init     *process

	mu    sync.Mutex
	execs map[string]*process
}

func (c *container) agent() agentService { return c.pod.pod.Sandbox.Agent }

// process returns the init process ("") or an exec.
func (c *container) process(execID string) (*process, bool) {
	if execID == "" {
		return c.init, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	return p, ok
}

// all returns the init process and every exec.
func (c *container) all() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := []*process{c.init}
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	return ps
}
