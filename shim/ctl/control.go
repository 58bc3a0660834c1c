package ctl

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/api/jsoncall"
	"github.com/veil-runtime/veil/shim/stdio"
)

// Connect returns a ttrpc client to the agent of the VM that `veil-ctl run --name name` owns.
func Connect(ctx context.Context, name string) (*ttrpc.Client, error) {
	sock := filepath.Join(ControlRoot, name, "agent.sock")
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("no VM named %q is running (is `veil-ctl run --name %s` up?): %w", name, name, err)
	}
	return ttrpc.NewClient(conn), nil
}

// ExecOptions describe `veil-ctl exec`.
type ExecOptions struct {
	Name, ExecID string
	Process      *api.Process
	Stdin        io.Reader
	Stdout       io.Writer
	Stderr       io.Writer
}

// Exec runs a process in the named VM's container and returns its exit status.
func Exec(ctx context.Context, o ExecOptions) (int, error) {
	c, err := Connect(ctx, o.Name)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	agent := api.NewAgentClient(c)
	p := stdio.Process{Agent: agent, ContainerID: o.Name, ExecID: o.ExecID}
	return relayAndWait(ctx, p, o.Process.GetStdin(), o.Process.GetTerminal(), o.Stdin, o.Stdout, o.Stderr, func() error {
		_, err := agent.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: o.Name, ExecId: o.ExecID, Process: o.Process})
		return err
	})
}

// PS lists the processes of the named VM's container.
func PS(ctx context.Context, name string, w io.Writer) error {
	c, err := Connect(ctx, name)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := api.NewAgentClient(c).ListProcesses(ctx, &api.ListProcessesRequest{ContainerId: name})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%-8s %-16s %s\n", "PID", "EXEC", "COMMAND")
	for _, p := range resp.GetProcesses() {
		fmt.Fprintf(w, "%-8d %-16s %s\n", p.GetPid(), p.GetExecId(), strings.Join(p.GetArgs(), " "))
	}
	return nil
}

// Kill sends a signal (a number or a name such as TERM or SIGKILL) to a process of the named
// VM's container.
func Kill(ctx context.Context, name, execID, sig string, all bool) error {
	num, err := ParseSignal(sig)
	if err != nil {
		return err
	}
	c, err := Connect(ctx, name)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = api.NewAgentClient(c).SignalProcess(ctx, &api.SignalProcessRequest{
		ContainerId: name, ExecId: execID, Signal: uint32(num), All: all,
	})
	return err
}

// Call sends one raw request (JSON) to the named VM's agent and writes the JSON reply.
func Call(ctx context.Context, name, method, request string, w io.Writer) error {
	c, err := Connect(ctx, name)
	if err != nil {
		return err
	}
	defer c.Close()
	out, err := jsoncall.Call(ctx, c, method, request)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out)
	return err
}

// ParseSignal accepts "9", "KILL" or "SIGKILL".
func ParseSignal(s string) (unix.Signal, error) {
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && fmt.Sprint(n) == s {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d out of range", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
