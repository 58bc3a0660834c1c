package network

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// podNetns makes a named network namespace with one end of a veth pair in it (eth0,
// 10.99.0.2/24, default route via 10.99.0.1), as CNI's bridge plugin leaves it.
func podNetns(t *testing.T) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root (network namespaces, tc): run as root")
	}
	name := "veil-nettest-" + filepath.Base(t.TempDir())
	if len(name) > 30 {
		name = name[:30]
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	host := "vnt" + name[len(name)-6:]
	run("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run("-n", name, "link", "set", "eth0", "mtu", "1400", "up")
	run("-n", name, "addr", "add", "10.99.0.2/24", "dev", "eth0")
	run("-n", name, "route", "add", "default", "via", "10.99.0.1")
	return "/run/netns/" + name
}

func TestSetupTeardown(t *testing.T) {
	path := podNetns(t)
	e, err := Setup(path)
	if err != nil {
		t.Fatal(err)
	}
	ifc := e.Interface()
	if ifc.Name != "eth0" || ifc.Mtu != 1400 || len(ifc.Addresses) != 1 || ifc.Addresses[0].Cidr != "10.99.0.2/24" || !ifc.Up {
		t.Errorf("interface: %+v", ifc)
	}
	if _, err := net.ParseMAC(ifc.HwAddr); err != nil {
		t.Errorf("mac %q: %v", ifc.HwAddr, err)
	}
	routes := e.Routes()
	var def, prefix bool
	for _, r := range routes {
		def = def || (r.Dest == "" && r.Gateway == "10.99.0.1" && r.Device == "eth0")
		prefix = prefix || (r.Dest == "10.99.0.0/24" && r.Gateway == "" && r.Device == "eth0")
	}
	if len(routes) != 2 || !def || !prefix {
		t.Errorf("routes: %v, want the default route and the prefix route", routes)
	}
	err = inNetns(path, func() error {
		for _, name := range []string{"eth0", TapName} {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			filters, err := netlink.FilterList(l, netlink.MakeHandle(0xffff, 0))
			if err != nil {
				return err
			}
			if len(filters) != 1 {
				t.Errorf("%s: %d ingress filters, want 1 (the redirect)", name, len(filters))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Teardown(); err != nil {
		t.Fatal(err)
	}
	_ = inNetns(path, func() error {
		if _, err := netlink.LinkByName(TapName); err == nil {
			t.Errorf("%s still exists after Teardown", TapName)
		}
		return nil
	})
	if err := e.Teardown(); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
}

func TestSetupErrors(t *testing.T) {
	if _, err := Setup("/nonexistent/netns"); err == nil {
		t.Error("Setup of a missing namespace: no error")
	}
}
