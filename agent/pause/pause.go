// Package pause is the pod's sandbox process when the guest provides it (the pause bundle,
// api.DriverPause): it holds the pod's namespaces, reaps the orphans that a shared PID
// namespace hands it, and exits on SIGINT or SIGTERM, as Kubernetes' pause does. It is not a
// program of its own: the guest image's /init (veil-init, or the agent) runs it when started
// under the name "pause", so that the sandbox container runs only code that the TEE measured
// with the guest image, and the image needs no extra binary.
package pause

import (
	"os"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Name is the program name under which a binary acts as the pause process: the base name of
// api.PauseCommand.
const Name = "pause"

// Requested reports whether the process was started as the pause process: its argv[0] is
// "pause" or a path ending in "/pause".
func Requested() bool { return len(os.Args) > 0 && filepath.Base(os.Args[0]) == Name }

// Run is the pause process. It never returns: it exits 0 on SIGINT or SIGTERM and reaps every
// child that ends meanwhile.
func Run() {
	os.Exit(run(make(chan os.Signal, 8)))
}

// run waits on sigs, reaping on SIGCHLD, until SIGINT or SIGTERM, and returns the exit code.
func run(sigs chan os.Signal) int {
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGCHLD)
	reap()
	for s := range sigs {
		if s == unix.SIGCHLD {
			reap()
			continue
		}
		return 0
	}
	return 0
}

// reap collects every child that has ended.
func reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
