// Command containerd-shim-veil-v2 is the containerd shim of runtime type
// io.containerd.veil.v2: each pod (or each plain `ctr run`) gets a Veil VM, and the task
// service runs the containers inside it. See docs/shim.md.
package main

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/veil-runtime/veil/shim/manager"
	_ "github.com/veil-runtime/veil/shim/task/plugin"
)

func main() {
	ctx := context.Background()
	m := manager.New(manager.RuntimeName)
	if manager.LegacyStart(ctx, m) { // containerd < 2.3 (1.6, 1.7, 2.0–2.2)
		return
	}
	// The shim waits for its own children (QEMU, virtiofsd, logging binaries, probes) with
	// os/exec. containerd's implicit reaper (a wait4(-1) on every SIGCHLD) would steal their
	// exit statuses ("waitid: no child processes"), and no container process is a child of
	// this shim (they live in the VM), so neither the reaper nor the subreaper is wanted.
	shim.RunShim(ctx, m, func(c *shim.Config) {
		c.NoReaper = true
		c.NoSubreaper = true
	})
}
