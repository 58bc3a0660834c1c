package container

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/veil-runtime/veil/agent/api"
)

// consoleTimeout bounds the wait for the pty master that a terminal process sends.
const consoleTimeout = 10 * time.Second

// process is one process of a container (the init process has exec id "") with its stdio.
type process struct {
	execID   string
	args     []string
	lc       *libcontainer.Process
	terminal bool
	memPath  string // the container's memory cgroup, for OOM accounting

	// Parent ends of the stdio, fixed once the process has started. stdin is the pipe's
	// write end or, for a terminal, the pty master (nil without stdin); stdinClosed (under
	// stdinMu) is set by CloseStdin. console is the pty master of a terminal process.
	stdinMu     sync.Mutex
	stdin       *os.File
	stdinClosed bool
	console     *os.File
	consoleSock *os.File
	outR, errR  *os.File
	child       []*os.File // the child's ends, closed once it has started

	stdout, stderr *stream

	pid       int
	oomBefore uint64
	done      chan struct{} // closed once the process has been reaped
	status    *api.WaitProcessResponse
	closeOnce sync.Once
}

// newProcess prepares lp's stdio: a terminal (through a console socket) or pipes, with a
// stdin pipe only when stdin is set.
func newProcess(c *ctr, execID string, lp *libcontainer.Process, terminal, stdin bool) (_ *process, retErr error) {
	p := &process{
		execID: execID, args: lp.Args, lc: lp, terminal: terminal, memPath: memoryCgroupPath(c.lc),
		stdout: newStream(streamLimit), stderr: newStream(streamLimit), done: make(chan struct{}),
	}
	p.stdinClosed = !stdin
	defer func() {
		if retErr != nil {
			p.closeAll()
		}
	}()
	if terminal {
		parent, child, err := consoleSocket()
		if err != nil {
			return nil, err
		}
		p.consoleSock, lp.ConsoleSocket = parent, child
		p.child = append(p.child, child)
		return p, nil
	}
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("stdin pipe: %w", err)
		}
		lp.Stdin, p.stdin = r, w
		p.child = append(p.child, r)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	p.outR, lp.Stdout = outR, outW
	p.child = append(p.child, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	p.errR, lp.Stderr = errR, errW
	p.child = append(p.child, errW)
	return p, nil
}

// afterStart closes the child's ends, receives the pty master of a terminal process and
// starts reading the output.
func (p *process) afterStart() error {
	for _, f := range p.child {
		_ = f.Close()
	}
	p.child = nil
	p.pid, _ = p.lc.Pid()
	p.oomBefore, _ = oomKills(p.memPath)
	if !p.terminal {
		go p.stdout.fill(p.outR)
		go p.stderr.fill(p.errR)
		return nil
	}
	master, err := receiveConsole(p.consoleSock, consoleTimeout)
	_ = p.consoleSock.Close()
	p.consoleSock = nil
	if err != nil {
		return fmt.Errorf("receive the terminal of process %q: %w", p.execID, err)
	}
	p.console = master
	if !p.stdinClosed {
		p.stdin = master
	}
	p.stderr.closeSource()
	go p.stdout.fill(master)
	return nil
}

// wait reaps the process, records its exit status and queues its exit event.
func (p *process) wait(containerID string, events *eventQueue) {
	ps, _ := p.lc.Wait()
	st := &api.WaitProcessResponse{ExitedAtUnixNano: time.Now().UnixNano()}
	st.Status, st.Signal = exitStatus(ps)
	if st.Signal == uint32(syscall.SIGKILL) {
		st.OomKilled = oomKilledSince(p.memPath, p.oomBefore)
	}
	p.status = st
	close(p.done)
	events.push(&api.Event{
		Type:              api.Event_EXIT,
		ContainerId:       containerID,
		ExecId:            p.execID,
		Pid:               uint32(p.pid),
		ExitStatus:        st.Status,
		TimestampUnixNano: st.ExitedAtUnixNano,
	})
}

// exited reports whether the process has been reaped.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitStatus returns the exit code, or 128+signal and the signal when a signal ended it.
func exitStatus(ps *os.ProcessState) (int32, uint32) {
	if ps == nil {
		return 255, 0
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return int32(ps.ExitCode()), 0
	}
	if ws.Signaled() {
		return 128 + int32(ws.Signal()), uint32(ws.Signal())
	}
	return int32(ws.ExitStatus()), 0
}

// closeAll closes every descriptor the agent holds for the process and stops its readers.
// Output already buffered stays readable.
func (p *process) closeAll() {
	p.closeOnce.Do(func() {
		files := append([]*os.File{p.consoleSock, p.console, p.outR, p.errR}, p.child...)
		if p.stdin != nil {
			_ = p.stdin.SetWriteDeadline(time.Now()) // ends a write blocked on a full pipe
		}
		p.stdinMu.Lock()
		if p.stdin != nil && p.stdin != p.console && !p.stdinClosed {
			files = append(files, p.stdin)
		}
		p.stdinClosed = true
		p.stdinMu.Unlock()
		for _, f := range files {
			if f != nil {
				_ = f.Close()
			}
		}
		p.stdout.closeSource()
		p.stderr.closeSource()
	})
}
