package qemu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/veil-runtime/veil/hypervisor/internal/spawn"
	"github.com/veil-runtime/veil/hypervisor/statedir"
)

// process is one helper (QEMU or a virtiofsd) that leads its own process group, logs to a
// file in the state directory and is recorded there for statedir.Sweep.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been reaped
	err     error         // why it ended (nil for exit status 0); valid after done
}

// startProcess starts cmd with its stdout and stderr in <name>.log and records its pid.
func startProcess(name string, cmd *exec.Cmd, dir *statedir.Dir) (*process, error) {
	p := &process{name: name, cmd: cmd, logPath: dir.File(name + ".log"), done: make(chan struct{})}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("qemu: %s: open log: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := spawn.Start(cmd); err != nil {
		return nil, fmt.Errorf("qemu: start %s: %w", name, err)
	}
	go p.wait()
	if err := dir.RecordPID(name, cmd.Process.Pid); err != nil {
		p.stop(0)
		return nil, err
	}
	return p, nil
}

func (p *process) wait() {
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		err = describeExit(p.name, p.cmd.Process.Pid, exit.ProcessState)
	} else if err != nil {
		err = fmt.Errorf("%s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	p.err = err
	close(p.done)
}

// describeExit names a non-zero exit: a signal, or a status.
func describeExit(name string, pid int, st *os.ProcessState) error {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Errorf("%s (pid %d) was killed by signal %d (%s)", name, pid, ws.Signal(), ws.Signal())
	}
	return fmt.Errorf("%s (pid %d) exited with status %d", name, pid, st.ExitCode())
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process's whole group, unless the leader is reaped already (its
// pid, and so the group id, may then belong to someone else).
func (p *process) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), sig)
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the group and waits until reaped.
// A zero grace kills at once.
func (p *process) stop(grace time.Duration) {
	if grace > 0 {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	p.signal(syscall.SIGKILL)
	<-p.done
	p.killGroupRemains(2 * time.Second)
}

// killGroupRemains kills what is left of the process's group once the leader is reaped:
// virtiofsd forks its sandboxed worker into the same group, and it can outlive the leader for
// a moment. A pid is not reused while it names a group that still has members, so while
// kill(-pgid) finds anyone, they are ours. Bounded by d.
func (p *process) killGroupRemains(d time.Duration) {
	pgid := p.pid()
	if pgid <= 1 {
		return // kill(-0) or kill(-1) would hit our own group or everyone
	}
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
			return // ESRCH: the group is empty
		}
	}
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	return lastLines(string(b), 5)
}
