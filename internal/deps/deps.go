// Package deps pins the modules that the packages being written need, so that parallel work
// does not race on go.mod. It is removed once every module here is imported for real.
package deps

import (
	_ "github.com/hashicorp/yamux"
	_ "github.com/mdlayher/vsock"
	_ "github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/specconv"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/sys/unix"
	_ "github.com/containerd/log"
	_ "github.com/creack/pty"
)
