// Package spawn starts helper processes (QEMU, virtiofsd) so that they die with their owner.
//
// Each process gets its own process group (so it and anything it forks can be killed
// together) and PR_SET_PDEATHSIG=SIGKILL. Linux delivers the parent-death signal when the
// *thread* that forked the child exits, not the process, and the Go runtime ends a thread
// whenever a goroutine that locked it returns. So every child is forked from one dedicated
// goroutine that locks its OS thread and never returns: the signal then fires only when the
// whole owner process dies.
package spawn

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

type request struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	once     sync.Once
	requests chan request
)

// Start sets cmd's process group and parent-death signal and starts it from the spawner
// thread. Wait for it as usual (cmd.Wait from any goroutine).
func Start(cmd *exec.Cmd) error {
	once.Do(func() {
		requests = make(chan request)
		go spawner()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	r := request{cmd: cmd, done: make(chan error, 1)}
	requests <- r
	return <-r.done
}

// spawner runs for the life of the program on a locked thread that is never released.
func spawner() {
	runtime.LockOSThread()
	for r := range requests {
		r.done <- r.cmd.Start()
	}
}
