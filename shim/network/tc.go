package network

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// wire creates the tap (persistent, so QEMU can attach to it later; same MTU as the veth)
// and redirects all traffic between the veth and the tap in both directions.
func wire(veth netlink.Link, mtu int) error {
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: TapName, MTU: mtu},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return fmt.Errorf("create tap %s: %w", TapName, err)
	}
	tapLink, err := netlink.LinkByName(TapName)
	if err != nil {
		return fmt.Errorf("find tap %s: %w", TapName, err)
	}
	if err := netlink.LinkSetUp(tapLink); err != nil {
		return fmt.Errorf("bring %s up: %w", TapName, err)
	}
	if err := redirect(veth, tapLink); err != nil {
		return err
	}
	return redirect(tapLink, veth)
}

// ingress is the ingress qdisc of a link.
func ingress(index int) *netlink.Ingress {
	return &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS,
	}}
}

// redirect sends every frame that arrives on from out of to: an ingress qdisc on from with
// a match-all u32 filter whose action is a mirred egress redirect.
func redirect(from, to netlink.Link) error {
	fa := from.Attrs()
	if err := netlink.QdiscAdd(ingress(fa.Index)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("ingress qdisc on %s: %w", fa.Name, err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: fa.Index,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  1,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to.Attrs().Index,
		}},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", fa.Name, to.Attrs().Name, err)
	}
	return nil
}

// removeTap deletes the tap (its qdisc and filters go with it).
func removeTap() error {
	l, err := netlink.LinkByName(TapName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find %s: %w", TapName, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete %s: %w", TapName, err)
	}
	return nil
}
