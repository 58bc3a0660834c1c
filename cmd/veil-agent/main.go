// Command veil-agent is the guest side of Veil: the agent proper (package agent), started by
// the guest's init (cmd/veil-init) with --guest. Started by libcontainer as "veil-agent init"
// it is a container's init; started as "pause" (an image whose /init is the agent) it is the
// pause bundle's process. Its flags let it run outside a VM, for tests:
// veil-agent --listen unix:/tmp/agent.sock.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent"
	"github.com/veil-runtime/veil/agent/container"
	"github.com/veil-runtime/veil/agent/initsys"
	"github.com/veil-runtime/veil/agent/pause"
	"github.com/veil-runtime/veil/agent/server"
	"github.com/veil-runtime/veil/agent/startup"
)

func main() {
	entered := startup.Now()    // the Go runtime and every package initialiser have run
	container.InitIfRequested() // first: libcontainer's re-exec as "init" never returns
	if pause.Requested() {
		pause.Run() // never returns
	}
	os.Exit(run(entered))
}

// listenFlags collects repeated --listen flags.
type listenFlags []string

func (l *listenFlags) String() string     { return strings.Join(*l, ",") }
func (l *listenFlags) Set(v string) error { *l = append(*l, v); return nil }

func run(entered time.Duration) int {
	var listen listenFlags
	flag.Var(&listen, "listen", "serve on this transport (repeatable): unix:PATH, vsock:PORT or virtio-serial:NAME;\n"+
		"none means every guest transport that exists")
	stateDir := flag.String("state-dir", agent.DefaultStateDir, "libcontainer state directory")
	guest := flag.Bool(strings.TrimPrefix(initsys.GuestFlag, "--"), false,
		"prepare the guest (lo up, /run/veil) before serving; init sets it")
	level := flag.String("log-level", "", "log level (trace, debug, info, warn, error);\n"+
		"empty means veil.log_level of the kernel command line, or info")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println("veil-agent", server.AgentVersion)
		return 0
	}
	ctx, err := initsys.SetupLogging(context.Background(), "agent", *level)
	if err != nil {
		fmt.Fprintln(os.Stderr, "veil-agent:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, unix.SIGTERM, unix.SIGINT)
	defer stop()
	start := startup.FromEnv()
	start.MarkAt("main", entered)
	err = agent.Run(ctx, agent.Options{Listen: listen, StateDir: *stateDir, Guest: *guest, Start: start})
	if err != nil {
		log.G(ctx).WithError(err).Error("agent failed")
		if *guest {
			// Init prints it in its power-off line, which the host reads on the console.
			if werr := initsys.WriteExitReason(initsys.ExitReasonFile, err.Error()); werr != nil {
				log.G(ctx).WithError(werr).Warn("init will not know why")
			}
		}
		return 1
	}
	return 0
}
