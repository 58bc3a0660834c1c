package network

import (
	"fmt"
	"net"
	"sort"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
)

// UpdateRoutes makes want the routes of the main table on every device but loopback ones.
// Routes the kernel manages itself (IPv6 link-local and multicast) stay. Routes without a
// gateway are added first, so that the gateways of the others are reachable when they are
// added. A route with no gateway and scope 0 gets scope link, as ip(8) does. It returns the
// routes as they are afterwards.
func UpdateRoutes(want []*api.Route) ([]*api.Route, error) {
	routes := make([]*netlink.Route, 0, len(want))
	for i, r := range want {
		nr, err := toNetlinkRoute(r)
		if err != nil {
			return nil, fmt.Errorf("route %d: %w", i, err)
		}
		routes = append(routes, nr)
	}
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Gw == nil && routes[j].Gw != nil })

	current, err := managedRoutes()
	if err != nil {
		return nil, err
	}
	for _, c := range current {
		if wanted(c, routes) {
			continue
		}
		if err := netlink.RouteDel(&c); err != nil && err != unix.ESRCH {
			return nil, fmt.Errorf("remove route %s: %w", c, err)
		}
	}
	for _, r := range routes {
		if err := netlink.RouteReplace(r); err != nil {
			return nil, fmt.Errorf("add route %s: %w", r, err)
		}
	}
	return ListRoutes()
}

// ListRoutes returns the routes of the main table on every device but loopback ones,
// leaving out IPv6 link-local and multicast routes.
func ListRoutes() ([]*api.Route, error) {
	routes, err := managedRoutes()
	if err != nil {
		return nil, err
	}
	names, err := linkNames()
	if err != nil {
		return nil, err
	}
	out := make([]*api.Route, 0, len(routes))
	for _, r := range routes {
		out = append(out, toAPIRoute(r, names[r.LinkIndex]))
	}
	return out, nil
}

// managedRoutes lists the routes UpdateRoutes replaces.
func managedRoutes() ([]netlink.Route, error) {
	links, err := listLinks()
	if err != nil {
		return nil, err
	}
	loopback := make(map[int]bool)
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			loopback[l.Attrs().Index] = true
		}
	}
	var all []netlink.Route
	err = retryDump(func() (err error) {
		all, err = netlink.RouteList(nil, netlink.FAMILY_ALL)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	out := all[:0]
	for _, r := range all {
		if loopback[r.LinkIndex] || kernelManaged(r) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// kernelManaged reports IPv6 link-local and multicast routes, which the kernel keeps for
// every device that is up.
func kernelManaged(r netlink.Route) bool {
	return r.Dst != nil && r.Dst.IP.To4() == nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast())
}

// wanted reports whether c is one of routes, comparing what the request can say.
func wanted(c netlink.Route, routes []*netlink.Route) bool {
	for _, r := range routes {
		if dstString(c.Dst) == dstString(r.Dst) && c.Gw.Equal(r.Gw) &&
			(r.LinkIndex == 0 || r.LinkIndex == c.LinkIndex) &&
			(r.Src == nil || r.Src.Equal(c.Src)) {
			return true
		}
	}
	return false
}

func toNetlinkRoute(r *api.Route) (*netlink.Route, error) {
	if r.GetScope() > 255 {
		return nil, fmt.Errorf("scope %d is not a route scope (0-255): %w", r.GetScope(), errdefs.ErrInvalidArgument)
	}
	nr := &netlink.Route{Scope: netlink.Scope(r.GetScope())}
	if r.GetGateway() != "" {
		if nr.Gw = net.ParseIP(r.GetGateway()); nr.Gw == nil {
			return nil, fmt.Errorf("gateway %q is not an IP address: %w", r.GetGateway(), errdefs.ErrInvalidArgument)
		}
	}
	if r.GetSource() != "" {
		if nr.Src = net.ParseIP(r.GetSource()); nr.Src == nil {
			return nil, fmt.Errorf("source %q is not an IP address: %w", r.GetSource(), errdefs.ErrInvalidArgument)
		}
	}
	if err := setDst(nr, r.GetDest()); err != nil {
		return nil, err
	}
	if nr.Gw != nil && family(nr.Gw) != family(nr.Dst.IP) {
		return nil, fmt.Errorf("gateway %s and destination %s are of different IP versions: %w", nr.Gw, nr.Dst, errdefs.ErrInvalidArgument)
	}
	if r.GetDevice() == "" && nr.Gw == nil {
		return nil, fmt.Errorf("route to %s has neither a device nor a gateway: %w", nr.Dst, errdefs.ErrInvalidArgument)
	}
	if r.GetDevice() != "" {
		link, err := linkByName(r.GetDevice())
		if err != nil {
			return nil, err
		}
		nr.LinkIndex = link.Attrs().Index
	}
	if nr.Gw == nil && nr.Scope == netlink.SCOPE_UNIVERSE {
		nr.Scope = netlink.SCOPE_LINK
	}
	return nr, nil
}

// setDst sets the destination; an empty one is the default route of the gateway's (or else
// the source's, or else IPv4's) family.
func setDst(nr *netlink.Route, dest string) error {
	if dest != "" {
		_, dst, err := net.ParseCIDR(dest)
		if err != nil {
			return fmt.Errorf("dest %q is not in CIDR form: %w", dest, errdefs.ErrInvalidArgument)
		}
		nr.Dst = dst
		return nil
	}
	ip := nr.Gw
	if ip == nil {
		ip = nr.Src
	}
	if ip != nil && ip.To4() == nil {
		nr.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	} else {
		nr.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return nil
}

func toAPIRoute(r netlink.Route, device string) *api.Route {
	out := &api.Route{Dest: dstString(r.Dst), Device: device, Scope: uint32(r.Scope)}
	if r.Gw != nil {
		out.Gateway = r.Gw.String()
	}
	if r.Src != nil {
		out.Source = r.Src.String()
	}
	return out
}

// dstString is "" for a default route (however netlink shows it) and the CIDR otherwise.
func dstString(dst *net.IPNet) string {
	if dst == nil {
		return ""
	}
	if ones, _ := dst.Mask.Size(); ones == 0 && dst.IP.IsUnspecified() {
		return ""
	}
	return dst.String()
}

func linkNames() (map[int]string, error) {
	links, err := listLinks()
	if err != nil {
		return nil, err
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	return names, nil
}
