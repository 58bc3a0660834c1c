package snapconfig

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestContainerdConfig: the fragment, appended to a version 3 file, decodes to the proxy
// plugin (type, address, the remote snapshot annotations export) and the transfer service's
// two unpack entries; a runtime handler can name the snapshotter.
func TestContainerdConfig(t *testing.T) {
	doc := "version = 3\n" + ContainerdConfig("/run/x/s.sock", "overlayfs") +
		"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil-sim]\n  snapshotter = '" + Name + "'\n"
	var cfg struct {
		ProxyPlugins map[string]struct {
			Type, Address string
			Exports       map[string]string
		} `toml:"proxy_plugins"`
		Plugins map[string]struct {
			UnpackConfig []struct{ Platform, Snapshotter, Differ string } `toml:"unpack_config"`
		}
	}
	if _, err := toml.Decode(doc, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	p := cfg.ProxyPlugins[Name]
	if p.Type != "snapshot" || p.Address != "/run/x/s.sock" || p.Exports["enable_remote_snapshot_annotations"] != "true" {
		t.Fatalf("proxy plugin %+v", p)
	}
	u := cfg.Plugins["io.containerd.transfer.v1.local"].UnpackConfig
	if len(u) != 2 || u[0].Snapshotter != "overlayfs" || u[1].Snapshotter != Name || u[1].Differ != "walking" || u[1].Platform == "" {
		t.Fatalf("unpack_config %+v", u)
	}
	if unit := Unit("/opt/veil/bin/veil-snapshotter"); !strings.Contains(unit,
		"\nExecStart=/opt/veil/bin/veil-snapshotter -root "+DefaultRoot+" -address "+DefaultAddress+"\n") {
		t.Fatalf("unit:\n%s", unit)
	}
}
