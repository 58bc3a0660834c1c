package container

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's C constructor joins the container's namespaces before the Go runtime starts
	// when the binary runs as libcontainer's init. It needs cgo.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// InitIfRequested turns the process into libcontainer's container init when it was started
// as "<binary> init" (libcontainer re-executes /proc/self/exe that way for every container
// process); it then never returns. Otherwise it returns at once. The agent's main must call it
// first thing, before it starts goroutines, opens files or parses flags.
func InitIfRequested() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // exits
	}
}
