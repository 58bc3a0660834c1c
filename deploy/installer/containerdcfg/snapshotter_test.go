package containerdcfg

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/veil-runtime/veil/deploy/installer/host"
	"github.com/veil-runtime/veil/snapshotter/snapconfig"
)

// TestRenderSnapshotter: with the snapshotter's socket in the spec, a containerd 2.x drop-in
// declares the proxy plugin, the transfer service's unpack entries (the main file's CRI
// snapshotter kept as the default one) and snapshotter = 'veil' on the runtimes that ask for
// it only; containerd 1.x is refused.
func TestRenderSnapshotter(t *testing.T) {
	sp := spec
	sp.Runtimes = append([]Runtime{}, spec.Runtimes...)
	sp.Runtimes[1].Snapshotter = snapconfig.Name
	sp.SnapshotterAddress = snapconfig.DefaultAddress

	main := fixtureV3 + "\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = 'native'\n"
	cc, err := Read(newHost(t, main), "", 2)
	if err != nil {
		t.Fatal(err)
	}
	data, err := cc.Render(sp)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ProxyPlugins map[string]map[string]any `toml:"proxy_plugins"`
		Plugins      map[string]struct {
			UnpackConfig []struct{ Snapshotter string } `toml:"unpack_config"`
			Containerd   struct {
				Runtimes map[string]struct{ Snapshotter string }
			}
		}
	}
	if _, err := toml.Decode(string(data), &doc); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if p := doc.ProxyPlugins[snapconfig.Name]; p["address"] != snapconfig.DefaultAddress || p["type"] != "snapshot" {
		t.Fatalf("proxy plugin %v\n%s", p, data)
	}
	u := doc.Plugins["io.containerd.transfer.v1.local"].UnpackConfig
	if len(u) != 2 || u[0].Snapshotter != "native" || u[1].Snapshotter != snapconfig.Name {
		t.Fatalf("unpack_config %+v", u)
	}
	rts := doc.Plugins[criPluginV3].Containerd.Runtimes
	if rts["veil"].Snapshotter != "" || rts["veil-sim"].Snapshotter != snapconfig.Name {
		t.Fatalf("runtimes %+v\n%s", rts, data)
	}

	// Without the address, nothing of it.
	cc, _ = Read(newHost(t, fixtureV3), "", 2)
	if data, err = cc.Render(spec); err != nil || strings.Contains(string(data), "proxy_plugins") || strings.Contains(string(data), "snapshotter") {
		t.Fatalf("no snapshotter: %v\n%s", err, data)
	}

	// containerd 1.x: refused, naming why.
	cc, err = Read(newHost(t, fixtureV2), "", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Render(sp); err == nil || !strings.Contains(err.Error(), "needs containerd 2.x") {
		t.Fatalf("1.x: %v", err)
	}
}

// TestContainerdReadsSnapshotterDropIn: containerd 2.4 (`containerd config dump`) merges the
// drop-in with the snapshotter: the proxy plugin, the transfer service's two unpack entries
// and veil-sim's snapshotter are in its effective configuration.
func TestContainerdReadsSnapshotterDropIn(t *testing.T) {
	bin := containerdBinary(t, "VEIL_TEST_CONTAINERD", "containerd")
	dir := t.TempDir()
	main := filepath.Join(dir, "config.toml")
	content := "version = 3\nimports = [\"" + dir + "/conf.d/*.toml\"]\nroot = \"" + dir + "/root\"\nstate = \"" + dir + "/state\"\n"
	if err := os.WriteFile(main, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Read(host.New("/"), main, 2)
	if err != nil {
		t.Fatal(err)
	}
	sp := spec
	sp.Runtimes = append([]Runtime{}, spec.Runtimes...)
	sp.Runtimes[1].Snapshotter = snapconfig.Name
	sp.SnapshotterAddress = snapconfig.DefaultAddress
	if _, _, err := c.Apply(sp, nil); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-c", main, "config", "dump").Output()
	if err != nil {
		t.Fatalf("%s config dump: %v", bin, err)
	}
	var doc struct {
		ProxyPlugins map[string]struct{ Type, Address string } `toml:"proxy_plugins"`
		Plugins      map[string]struct {
			UnpackConfig []struct{ Snapshotter string } `toml:"unpack_config"`
			Containerd   struct {
				Runtimes map[string]struct{ Snapshotter string }
			}
		}
	}
	if _, err := toml.Decode(string(out), &doc); err != nil {
		t.Fatalf("config dump does not decode: %v\n%s", err, out)
	}
	if p := doc.ProxyPlugins[snapconfig.Name]; p.Type != "snapshot" || p.Address != snapconfig.DefaultAddress {
		t.Errorf("containerd's proxy plugin %+v", p)
	}
	if u := doc.Plugins["io.containerd.transfer.v1.local"].UnpackConfig; len(u) != 2 || u[1].Snapshotter != snapconfig.Name {
		t.Errorf("containerd's unpack_config %+v", u)
	}
	if s := doc.Plugins[criPluginV3].Containerd.Runtimes["veil-sim"].Snapshotter; s != snapconfig.Name {
		t.Errorf("containerd's veil-sim snapshotter %q", s)
	}
}
