// Package network wires a pod's network namespace into its VM, as Kata Containers does: CNI
// has put a veth (with the pod's address and routes) into the namespace; this package adds a
// tap device beside it and redirects every frame between the two with tc (an ingress qdisc
// and a mirred redirect on each), so that the VM's virtio-net interface, which QEMU backs
// with the tap, is on the pod's network. The guest interface takes the veth's MAC address,
// addresses, MTU and routes (Endpoint.Interface, Endpoint.Routes), which the shim sends to
// the agent. Nothing is configured on the host side of the veth.
package network

import (
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// TapName is the tap device the package creates in the pod's namespace.
const TapName = "tap0_veil"

// Endpoint is a pod network namespace wired for a VM.
type Endpoint struct {
	Netns   string // path of the pod's network namespace
	TapName string
	Veth    string // the CNI interface's name; the guest interface gets it too
	MAC     string // the veth's MAC: the guest interface's
	MTU     int
	Addrs   []string // CIDRs of the veth
	routes  []*api.Route
}

// Interface is the guest interface the agent should configure (UpdateInterface).
func (e *Endpoint) Interface() *api.Interface {
	ifc := &api.Interface{Name: e.Veth, HwAddr: e.MAC, Mtu: uint32(e.MTU), Up: true}
	for _, a := range e.Addrs {
		ifc.Addresses = append(ifc.Addresses, &api.IPAddress{Cidr: a})
	}
	return ifc
}

// Routes are the guest's routes (UpdateRoutes, which takes the complete set): the
// namespace's routes through the veth, the address's prefix route included, except IPv6
// link-local and multicast ones.
func (e *Endpoint) Routes() []*api.Route { return e.routes }

// Setup finds the CNI interface in the namespace at nsPath, creates the tap and the tc
// redirects between them. On failure nothing it made is left.
func Setup(nsPath string) (*Endpoint, error) {
	e := &Endpoint{Netns: nsPath, TapName: TapName}
	err := inNetns(nsPath, func() error {
		veth, err := cniLink()
		if err != nil {
			return err
		}
		if err := e.describe(veth); err != nil {
			return err
		}
		if err := wire(veth, e.MTU); err != nil {
			_ = removeTap()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("network: wire %s into the VM: %w", nsPath, err)
	}
	return e, nil
}

// Teardown removes the tap and the tc configuration; the namespace and the veth belong to
// CNI. A namespace that is gone already is not an error.
func (e *Endpoint) Teardown() error {
	err := inNetns(e.Netns, func() error {
		if veth, err := netlink.LinkByName(e.Veth); err == nil {
			_ = netlink.QdiscDel(ingress(veth.Attrs().Index))
		}
		return removeTap()
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("network: tear down %s: %w", e.Netns, err)
	}
	return nil
}

// cniLink is the namespace's CNI interface: its veth, else its first non-loopback link
// that has an address.
func cniLink() (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var fallback netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Name == TapName {
			continue
		}
		if l.Type() == "veth" {
			return l, nil
		}
		if addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL); err == nil && len(addrs) > 0 && fallback == nil {
			fallback = l
		}
	}
	if fallback == nil {
		return nil, errors.New("no CNI interface in the namespace")
	}
	return fallback, nil
}

// describe records the veth's MAC, MTU, global addresses and routes.
func (e *Endpoint) describe(veth netlink.Link) error {
	a := veth.Attrs()
	e.Veth, e.MAC, e.MTU = a.Name, a.HardwareAddr.String(), a.MTU
	addrs, err := netlink.AddrList(veth, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", a.Name, err)
	}
	for _, ad := range addrs {
		if ad.Scope == int(netlink.SCOPE_UNIVERSE) {
			e.Addrs = append(e.Addrs, ad.IPNet.String())
		}
	}
	if len(e.Addrs) == 0 {
		return fmt.Errorf("%s has no address", a.Name)
	}
	routes, err := netlink.RouteList(veth, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("routes of %s: %w", a.Name, err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP.To4() == nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue // the guest kernel keeps these itself
		}
		e.routes = append(e.routes, apiRoute(r, a.Name))
	}
	return nil
}

func apiRoute(r netlink.Route, dev string) *api.Route {
	out := &api.Route{Device: dev, Scope: uint32(r.Scope)}
	if r.Dst != nil {
		if ones, _ := r.Dst.Mask.Size(); ones > 0 || !r.Dst.IP.IsUnspecified() {
			out.Dest = r.Dst.String() // else the default route: no destination
		}
	}
	if r.Gw != nil {
		out.Gateway = r.Gw.String()
	}
	if r.Src != nil {
		out.Source = r.Src.String()
	}
	return out
}

// inNetns runs fn on a thread inside the namespace at path. The thread is locked and never
// unlocked, so the Go runtime discards it afterwards instead of reusing it elsewhere.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
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
