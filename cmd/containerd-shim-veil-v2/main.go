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
	shim.RunShim(context.Background(), manager.New(manager.RuntimeName))
}
