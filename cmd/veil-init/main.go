// Command veil-init is the guest's /init (pid 1): it mounts, loads the image's kernel modules,
// starts the agent (/usr/bin/veil-agent --guest) as its child, reaps orphans and powers the VM
// off when the agent ends (package initsys). It is a binary of its own, without the agent's
// policy engine and container runtime, so that pid 1 stays small. Started as "pause" it is
// the sandbox container's process of the pause bundle (package pause).
package main

import (
	"context"

	"github.com/veil-runtime/veil/agent/initsys"
	"github.com/veil-runtime/veil/agent/pause"
)

func main() {
	if pause.Requested() {
		pause.Run() // never returns
	}
	// The kernel may pass stray words of its command line as arguments: they are ignored.
	initsys.Run(context.Background(), initsys.DefaultConfig())
}
