// Package network configures the guest's network as the host asks through the agent API:
// interfaces (found by MAC address), their addresses and MTU, the routes of the main table
// and ARP neighbours, all with netlink. It works on the calling thread's network namespace.
//
// Invalid requests fail with errdefs.ErrInvalidArgument and before anything changes; a
// device that does not exist fails with errdefs.ErrNotFound.
package network

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"

	"github.com/veil-runtime/veil/agent/api"
)

// dumpRetries bounds the retries of a netlink dump that the kernel interrupted because the
// table changed meanwhile.
const dumpRetries = 5

// SetupLoopback brings lo up.
func SetupLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback device: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// UpdateInterface configures the device whose MAC address is want.HwAddr: its name (when
// given and different), MTU (when not 0), addresses (replaced by want.Addresses; IPv6
// link-local addresses stay) and state (up or down as want.Up says). It returns the device
// as it is afterwards.
func UpdateInterface(want *api.Interface) (*api.Interface, error) {
	if want == nil {
		return nil, fmt.Errorf("update interface: no interface given: %w", errdefs.ErrInvalidArgument)
	}
	mac, err := net.ParseMAC(want.GetHwAddr())
	if err != nil {
		return nil, fmt.Errorf("interface hw_addr %q: %w: %w", want.GetHwAddr(), err, errdefs.ErrInvalidArgument)
	}
	if err := checkLinkName(want.GetName()); err != nil {
		return nil, err
	}
	addrs, err := parseAddrs(want.GetAddresses())
	if err != nil {
		return nil, err
	}
	link, err := linkByMAC(mac)
	if err != nil {
		return nil, err
	}
	if err := configureLink(link, want, addrs); err != nil {
		return nil, err
	}
	link, err = netlink.LinkByIndex(link.Attrs().Index)
	if err != nil {
		return nil, fmt.Errorf("read back interface %s: %w", mac, err)
	}
	return describeLink(link)
}

func configureLink(link netlink.Link, want *api.Interface, addrs []*netlink.Addr) error {
	name := link.Attrs().Name
	if want.GetName() != "" && want.GetName() != name {
		if err := netlink.LinkSetDown(link); err != nil {
			return fmt.Errorf("bring %s down to rename it: %w", name, err)
		}
		if err := netlink.LinkSetName(link, want.GetName()); err != nil {
			return fmt.Errorf("rename %s to %s: %w", name, want.GetName(), err)
		}
		name = want.GetName()
	}
	if mtu := int(want.GetMtu()); mtu > 0 && mtu != link.Attrs().MTU {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set MTU of %s to %d: %w", name, mtu, err)
		}
	}
	if err := replaceAddrs(link, name, addrs); err != nil {
		return err
	}
	if want.GetUp() {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring %s up: %w", name, err)
		}
	} else if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("bring %s down: %w", name, err)
	}
	return nil
}

// replaceAddrs makes addrs the addresses of link, keeping IPv6 link-local ones.
func replaceAddrs(link netlink.Link, name string, addrs []*netlink.Addr) error {
	var current []netlink.Addr
	err := retryDump(func() (err error) {
		current, err = netlink.AddrList(link, netlink.FAMILY_ALL)
		return err
	})
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", name, err)
	}
	wanted := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		wanted[a.IPNet.String()] = true
	}
	for _, a := range current {
		if wanted[a.IPNet.String()] || a.IP.IsLinkLocalUnicast() {
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil {
			return fmt.Errorf("remove address %s from %s: %w", a.IPNet, name, err)
		}
	}
	for _, a := range addrs {
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("add address %s to %s: %w", a.IPNet, name, err)
		}
	}
	return nil
}

// ListInterfaces describes every network device of the guest, lo included.
func ListInterfaces() ([]*api.Interface, error) {
	links, err := listLinks()
	if err != nil {
		return nil, err
	}
	out := make([]*api.Interface, 0, len(links))
	for _, l := range links {
		iface, err := describeLink(l)
		if err != nil {
			return nil, err
		}
		out = append(out, iface)
	}
	return out, nil
}

// AddARPNeighbors adds (or replaces) static neighbour entries. Every entry needs an IP
// address, a device and a MAC address; state 0 means NUD_PERMANENT.
func AddARPNeighbors(neighbors []*api.ARPNeighbor) error {
	entries := make([]*netlink.Neigh, 0, len(neighbors))
	for i, n := range neighbors {
		e, err := toNeigh(n)
		if err != nil {
			return fmt.Errorf("neighbor %d: %w", i, err)
		}
		entries = append(entries, e)
	}
	for i, e := range entries {
		if err := netlink.NeighSet(e); err != nil {
			return fmt.Errorf("add neighbor %s on %s: %w", e.IP, neighbors[i].GetDevice(), err)
		}
	}
	return nil
}

func toNeigh(n *api.ARPNeighbor) (*netlink.Neigh, error) {
	ip := net.ParseIP(n.GetIpAddress())
	if ip == nil {
		return nil, fmt.Errorf("ip_address %q is not an IP address: %w", n.GetIpAddress(), errdefs.ErrInvalidArgument)
	}
	mac, err := net.ParseMAC(n.GetHwAddr())
	if err != nil {
		return nil, fmt.Errorf("hw_addr %q: %w: %w", n.GetHwAddr(), err, errdefs.ErrInvalidArgument)
	}
	link, err := linkByName(n.GetDevice())
	if err != nil {
		return nil, err
	}
	state := int(n.GetState())
	if state == 0 {
		state = netlink.NUD_PERMANENT
	}
	return &netlink.Neigh{
		LinkIndex:    link.Attrs().Index,
		Family:       family(ip),
		State:        state,
		Flags:        int(n.GetFlags()),
		IP:           ip,
		HardwareAddr: mac,
	}, nil
}

func describeLink(l netlink.Link) (*api.Interface, error) {
	attrs := l.Attrs()
	var addrs []netlink.Addr
	err := retryDump(func() (err error) {
		addrs, err = netlink.AddrList(l, netlink.FAMILY_ALL)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", attrs.Name, err)
	}
	iface := &api.Interface{
		Name:   attrs.Name,
		HwAddr: attrs.HardwareAddr.String(),
		Mtu:    uint32(attrs.MTU),
		Up:     attrs.Flags&net.FlagUp != 0,
	}
	for _, a := range addrs {
		iface.Addresses = append(iface.Addresses, &api.IPAddress{Cidr: a.IPNet.String()})
	}
	return iface, nil
}

func parseAddrs(in []*api.IPAddress) ([]*netlink.Addr, error) {
	out := make([]*netlink.Addr, 0, len(in))
	for _, a := range in {
		ip, ipnet, err := net.ParseCIDR(a.GetCidr())
		if err != nil {
			return nil, fmt.Errorf("address %q is not in CIDR form: %w", a.GetCidr(), errdefs.ErrInvalidArgument)
		}
		ipnet.IP = ip
		out = append(out, &netlink.Addr{IPNet: ipnet})
	}
	return out, nil
}

func checkLinkName(name string) error {
	if len(name) >= 16 || strings.ContainsAny(name, "/: \t\n") || name == "." || name == ".." {
		return fmt.Errorf("interface name %q is not a valid device name: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

func linkByMAC(mac net.HardwareAddr) (netlink.Link, error) {
	links, err := listLinks()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac.String() {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no network device with MAC address %s: %w", mac, errdefs.ErrNotFound)
}

func linkByName(name string) (netlink.Link, error) {
	if name == "" {
		return nil, fmt.Errorf("no device given: %w", errdefs.ErrInvalidArgument)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil, fmt.Errorf("no network device %q: %w", name, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("find network device %q: %w", name, err)
	}
	return l, nil
}

func listLinks() ([]netlink.Link, error) {
	var links []netlink.Link
	err := retryDump(func() (err error) {
		links, err = netlink.LinkList()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list network devices: %w", err)
	}
	return links, nil
}

// retryDump runs a netlink dump again when the kernel says it was interrupted.
func retryDump(dump func() error) error {
	var err error
	for i := 0; i < dumpRetries; i++ {
		if err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}

func family(ip net.IP) int {
	if ip.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
