// Package portfwd makes containerd's port forwarding (kubectl port-forward) reach a Veil pod.
// containerd's CRI forwards a port by entering the pod's network namespace and dialling
// localhost:<port>; in a Veil pod that namespace only carries the VM's traffic, and nothing
// listens on its loopback. A Forwarder listens on one loopback port in the namespace, sends
// every other TCP connection to 127.0.0.1 there to it (an nftables redirect in the namespace),
// reads the port each connection was for (SO_ORIGINAL_DST), and carries it to that port on the
// guest's loopback through the agent API (OpenPort, WritePort, ReadPort, ClosePort), where the
// policy judges it. Nothing outside the pod's namespace changes.
package portfwd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"

	"github.com/containerd/log"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/status"

	"github.com/veil-runtime/veil/agent/api"
)

// TableName is the nftables table (family ip) the Forwarder adds to the pod's namespace.
const TableName = "veil_portfwd"

// Agent is the part of the agent API a Forwarder uses.
type Agent interface {
	OpenPort(context.Context, *api.OpenPortRequest) (*api.OpenPortResponse, error)
	WritePort(context.Context, *api.WritePortRequest) (*api.WriteStreamResponse, error)
	ReadPort(context.Context, *api.ReadPortRequest) (*api.ReadStreamResponse, error)
	ClosePort(context.Context, *api.ClosePortRequest) (*api.Empty, error)
}

// Forwarder carries the connections made to the pod's loopback into the guest.
type Forwarder struct {
	netns  string
	agent  Agent
	l      *net.TCPListener
	port   uint16 // the listener's port in the namespace
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[*net.TCPConn]struct{}
}

// Start listens in the network namespace at nsPath, adds the redirect, and serves until Close.
// On failure nothing it made is left.
func Start(ctx context.Context, nsPath string, agent Agent) (*Forwarder, error) {
	f := &Forwarder{netns: nsPath, agent: agent, conns: map[*net.TCPConn]struct{}{}}
	if err := inNetns(nsPath, f.listen); err != nil {
		return nil, fmt.Errorf("port forwarding in %s: %w", nsPath, err)
	}
	if err := f.redirect(true); err != nil {
		f.l.Close()
		return nil, fmt.Errorf("port forwarding in %s: %w", nsPath, err)
	}
	ctx, f.cancel = context.WithCancel(context.WithoutCancel(ctx))
	f.wg.Add(1)
	go f.serve(ctx)
	return f, nil
}

// Port is the loopback port the Forwarder listens on in the namespace.
func (f *Forwarder) Port() uint16 { return f.port }

// listen brings the namespace's loopback up and listens on an ephemeral port of it (run in
// the namespace).
func (f *Forwarder) listen() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring loopback up: %w", err)
	}
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("listen on loopback: %w", err)
	}
	f.l, f.port = l, uint16(l.Addr().(*net.TCPAddr).Port)
	return nil
}

// redirect adds (or, with add false, deletes) the nftables table that sends every TCP
// connection to 127.0.0.1 but the listener's own port to the listener.
func (f *Forwarder) redirect(add bool) error {
	ns, err := netns.GetFromPath(f.netns)
	if err != nil {
		return fmt.Errorf("open %s: %w", f.netns, err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	if !add {
		c.DelTable(table)
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("nftables: delete table %s: %w", TableName, err)
		}
		return nil
	}
	c.AddTable(table)
	chain := c.AddChain(&nftables.Chain{
		Name: "output", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
	})
	port := binaryutil.BigEndian.PutUint16(f.port)
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, // ip daddr
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net.IPv4(127, 0, 0, 1).To4()},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, // tcp dport
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: port},
		&expr.Immediate{Register: 1, Data: port},
		&expr.Redir{RegisterProtoMin: 1},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: add the redirect to port %d: %w", f.port, err)
	}
	return nil
}

// Close stops accepting, ends every connection, and removes the redirect.
func (f *Forwarder) Close() error {
	f.cancel()
	err := f.l.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if rerr := f.redirect(false); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (f *Forwarder) serve(ctx context.Context) {
	defer f.wg.Done()
	for {
		c, err := f.l.AcceptTCP()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() {
				f.mu.Lock()
				delete(f.conns, c)
				f.mu.Unlock()
				c.Close()
			}()
			if err := f.forward(ctx, c); err != nil {
				log.G(ctx).WithError(err).Warn("port forwarding")
			}
		}()
	}
}

// inNetns runs fn on a thread in the network namespace at path; the thread ends with it.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("open %s: %w", path, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// statusMessage is an agent error's message without the gRPC wrapping.
func statusMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}
