package portfwd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/portfwd"
)

// guest is the agent side of the test: the agent's own connection table, dialling in the
// test's network namespace (which stands for the guest's), with a policy of allowed ports.
type guest struct {
	t       portfwd.Table
	allowed map[uint32]bool
}

func (g *guest) OpenPort(ctx context.Context, r *api.OpenPortRequest) (*api.OpenPortResponse, error) {
	if !g.allowed[r.GetPort()] {
		return nil, status.Errorf(codes.PermissionDenied, "OpenPortRequest denied by policy: port %d", r.GetPort())
	}
	id, err := g.t.Open(ctx, r.GetPort())
	return &api.OpenPortResponse{ConnId: id}, err
}

func (g *guest) WritePort(ctx context.Context, r *api.WritePortRequest) (*api.WriteStreamResponse, error) {
	n, err := g.t.Write(ctx, r.GetConnId(), r.GetData(), r.GetCloseWrite())
	return &api.WriteStreamResponse{Len: uint32(n)}, err
}

func (g *guest) ReadPort(ctx context.Context, r *api.ReadPortRequest) (*api.ReadStreamResponse, error) {
	data, eof, err := g.t.Read(ctx, r.GetConnId(), int(r.GetLen()))
	return &api.ReadStreamResponse{Data: data, Eof: eof}, err
}

func (g *guest) ClosePort(ctx context.Context, r *api.ClosePortRequest) (*api.Empty, error) {
	return &api.Empty{}, g.t.Close(r.GetConnId())
}

// podNetns makes a network namespace standing for a pod's and returns its path.
func podNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root: run the tests as root")
	}
	name := fmt.Sprintf("veil-pftest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s (install iproute2)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

// echo listens on the test's loopback and answers each line with "echo <line>".
func echo(t *testing.T) uint32 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if line != "" {
						_, _ = io.WriteString(c, "echo "+line)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

// dialIn connects to 127.0.0.1:port from inside the namespace at path, as containerd does.
func dialIn(t *testing.T, path string, port uint32) net.Conn {
	t.Helper()
	var c net.Conn
	err := inNetns(path, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial port %d in the pod's namespace: %v", port, err)
	}
	return c
}

func TestForwarder(t *testing.T) {
	ns := podNetns(t)
	port := echo(t)
	g := &guest{allowed: map[uint32]bool{port: true}}
	f, err := Start(context.Background(), ns, g)
	if err != nil {
		t.Fatal(err)
	}
	c := dialIn(t, ns, port)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "echo hello\n" {
		t.Fatalf("through the forwarder: %q, %v", line, err)
	}
	// The client closes its side: the guest's server ends, and so does the connection.
	_ = c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after the client's close: %q, %v", rest, err)
	}
	c.Close()

	// A port the policy refuses: the connection is accepted in the namespace and closed.
	other := port + 1
	if other == uint32(f.Port()) {
		other++
	}
	c = dialIn(t, ns, other)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("a refused port gave %q, %v", b, err)
	}
	c.Close()

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if waitFor(func() bool { return g.t.Len() == 0 }) == false {
		t.Errorf("%d guest connections left after Close", g.t.Len())
	}
	if tables := nftTables(t, ns); len(tables) != 0 {
		t.Errorf("nftables tables left in the namespace: %v", tables)
	}
}

func waitFor(cond func() bool) bool {
	for i := 0; i < 100; i++ {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func nftTables(t *testing.T, path string) []string {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range ts {
		names = append(names, tb.Name)
	}
	return names
}
