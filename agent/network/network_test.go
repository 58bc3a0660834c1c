package network

import (
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/veil-runtime/veil/agent/api"
)

const testMAC = "02:00:00:00:00:01"

// inNetns runs fn on a locked OS thread in a fresh network namespace holding lo and a veth
// pair: "test0" with MAC testMAC and its peer "peer0" (this kernel may lack the dummy driver), so the host's network is never touched. The thread is
// thrown away afterwards. fn reports failures with t.Errorf (it does not run on the test's
// goroutine, so it may not call t.Fatal).
func inNetns(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace (run the tests as root)")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := netns.New()
		if err != nil {
			t.Errorf("create network namespace: %v", err)
			return
		}
		defer ns.Close()
		mac, _ := net.ParseMAC(testMAC)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "test0", HardwareAddr: mac}, PeerName: "peer0"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Errorf("add veth pair: %v", err)
			return
		}
		peer, err := netlink.LinkByName("peer0")
		if err == nil {
			err = netlink.LinkSetUp(peer) // so that test0 has a carrier
		}
		if err != nil {
			t.Errorf("bring peer0 up: %v", err)
			return
		}
		fn()
	}()
	<-done
}

func TestUpdateInterface(t *testing.T) {
	inNetns(t, func() {
		if err := SetupLoopback(); err != nil {
			t.Errorf("SetupLoopback: %v", err)
		}
		got, err := UpdateInterface(&api.Interface{
			Name: "eth0", HwAddr: "02:00:00:00:00:01", Mtu: 1400, Up: true,
			Addresses: []*api.IPAddress{{Cidr: "10.88.0.2/16"}, {Cidr: "fd00::2/64"}},
		})
		if err != nil {
			t.Errorf("UpdateInterface: %v", err)
			return
		}
		if got.Name != "eth0" || got.Mtu != 1400 || !got.Up || got.HwAddr != testMAC {
			t.Errorf("UpdateInterface returned %v", got)
		}
		if !hasAddrs(got, "10.88.0.2/16", "fd00::2/64") {
			t.Errorf("addresses after the first update: %v", got.Addresses)
		}
		// The addresses are replaced, not added to.
		got, err = UpdateInterface(&api.Interface{
			HwAddr: testMAC, Up: true, Addresses: []*api.IPAddress{{Cidr: "10.89.0.3/24"}},
		})
		if err != nil {
			t.Errorf("second UpdateInterface: %v", err)
			return
		}
		if !hasAddrs(got, "10.89.0.3/24") || hasAddrs(got, "10.88.0.2/16") || hasAddrs(got, "fd00::2/64") {
			t.Errorf("addresses after the second update: %v", got.Addresses)
		}
		ifaces, err := ListInterfaces()
		if err != nil || len(ifaces) != 3 {
			t.Errorf("ListInterfaces = %v, %v; want lo, eth0 and peer0", ifaces, err)
		}
	})
}

func TestUpdateInterfaceErrors(t *testing.T) {
	inNetns(t, func() {
		for _, tc := range []struct {
			iface *api.Interface
			want  error
		}{
			{nil, errdefs.ErrInvalidArgument},
			{&api.Interface{HwAddr: "not-a-mac"}, errdefs.ErrInvalidArgument},
			{&api.Interface{HwAddr: "02:00:00:00:00:99"}, errdefs.ErrNotFound},
			{&api.Interface{HwAddr: testMAC, Addresses: []*api.IPAddress{{Cidr: "10.0.0.1"}}}, errdefs.ErrInvalidArgument},
			{&api.Interface{HwAddr: testMAC, Name: "a/b"}, errdefs.ErrInvalidArgument},
		} {
			if _, err := UpdateInterface(tc.iface); !errors.Is(err, tc.want) {
				t.Errorf("UpdateInterface(%v) = %v, want %v", tc.iface, err, tc.want)
			}
		}
	})
}

func TestUpdateRoutes(t *testing.T) {
	inNetns(t, func() {
		// A /32 address adds no subnet route: only the link route of the request makes the
		// gateway reachable.
		_, err := UpdateInterface(&api.Interface{
			HwAddr: testMAC, Up: true, Addresses: []*api.IPAddress{{Cidr: "10.88.0.2/32"}},
		})
		if err != nil {
			t.Errorf("UpdateInterface: %v", err)
			return
		}
		// The gateway route comes first in the request: it must still be added after the
		// link route that makes its gateway reachable.
		want := []*api.Route{
			{Gateway: "10.88.0.1", Device: "test0"},
			{Dest: "10.88.0.0/16", Device: "test0", Source: "10.88.0.2"},
			{Dest: "192.168.7.0/24", Gateway: "10.88.0.1", Device: "test0"},
		}
		got, err := UpdateRoutes(want)
		if err != nil {
			t.Errorf("UpdateRoutes: %v", err)
			return
		}
		if s := routeStrings(got); !slices.Equal(s, []string{
			" via 10.88.0.1 dev test0 scope 0",
			"10.88.0.0/16 via  dev test0 scope 253",
			"192.168.7.0/24 via 10.88.0.1 dev test0 scope 0",
		}) {
			t.Errorf("routes after UpdateRoutes: %q", s)
		}
		// A smaller set replaces the routes: the default route goes away.
		got, err = UpdateRoutes(want[1:2])
		if err != nil {
			t.Errorf("second UpdateRoutes: %v", err)
			return
		}
		if s := routeStrings(got); !slices.Equal(s, []string{"10.88.0.0/16 via  dev test0 scope 253"}) {
			t.Errorf("routes after the second UpdateRoutes: %q", s)
		}
		listed, err := ListRoutes()
		if err != nil || len(listed) != 1 {
			t.Errorf("ListRoutes = %v, %v", listed, err)
		}
		for _, bad := range []*api.Route{
			{Dest: "10.0.0.0", Device: "test0"},
			{Dest: "10.0.0.0/8"},
			{Dest: "10.0.0.0/8", Device: "nosuchdev"},
			{Gateway: "fd00::1", Dest: "10.0.0.0/8"},
			{Gateway: "x", Device: "test0"},
			{Dest: "10.0.0.0/8", Device: "test0", Scope: 300},
		} {
			if _, err := UpdateRoutes([]*api.Route{bad}); err == nil {
				t.Errorf("UpdateRoutes(%v) succeeded, want an error", bad)
			}
		}
	})
}

func TestAddARPNeighbors(t *testing.T) {
	inNetns(t, func() {
		if _, err := UpdateInterface(&api.Interface{HwAddr: testMAC, Up: true,
			Addresses: []*api.IPAddress{{Cidr: "10.88.0.2/16"}}}); err != nil {
			t.Errorf("UpdateInterface: %v", err)
			return
		}
		err := AddARPNeighbors([]*api.ARPNeighbor{{IpAddress: "10.88.0.9", Device: "test0", HwAddr: "02:00:00:00:00:09"}})
		if err != nil {
			t.Errorf("AddARPNeighbors: %v", err)
			return
		}
		link, _ := netlink.LinkByName("test0")
		neighs, err := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			t.Errorf("list neighbours: %v", err)
		}
		found := false
		for _, n := range neighs {
			found = found || (n.IP.String() == "10.88.0.9" && n.HardwareAddr.String() == "02:00:00:00:00:09" &&
				n.State == netlink.NUD_PERMANENT)
		}
		if !found {
			t.Errorf("neighbour 10.88.0.9 missing or not permanent: %v", neighs)
		}
		for _, bad := range []*api.ARPNeighbor{
			{IpAddress: "x", Device: "test0", HwAddr: "02:00:00:00:00:09"},
			{IpAddress: "10.88.0.9", Device: "test0", HwAddr: "x"},
			{IpAddress: "10.88.0.9", HwAddr: "02:00:00:00:00:09"},
		} {
			if err := AddARPNeighbors([]*api.ARPNeighbor{bad}); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("AddARPNeighbors(%v) = %v, want invalid argument", bad, err)
			}
		}
	})
}

func hasAddrs(iface *api.Interface, cidrs ...string) bool {
	for _, c := range cidrs {
		if !slices.ContainsFunc(iface.Addresses, func(a *api.IPAddress) bool { return a.Cidr == c }) {
			return false
		}
	}
	return true
}

func routeStrings(rs []*api.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Dest+" via "+r.Gateway+" dev "+r.Device+" scope "+strconv.Itoa(int(r.Scope)))
	}
	slices.Sort(out)
	return out
}
