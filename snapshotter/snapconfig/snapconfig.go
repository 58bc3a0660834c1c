// Package snapconfig holds what containerd's configuration needs to use veil-snapshotter (its
// name, default socket and unit file, the TOML fragment), without the snapshotter's code: the
// node installer and the tests import it (package snapshotter re-exports it).
package snapconfig

import (
	"fmt"
	"strings"

	"github.com/containerd/platforms"
)

// DefaultAddress is the unix socket veil-snapshotter serves on; containerd's
// [proxy_plugins.veil] address names it.
const DefaultAddress = "/run/veil-snapshotter/snapshotter.sock"

// DefaultRoot is where veil-snapshotter keeps its metadata and snapshot directories.
const DefaultRoot = "/var/lib/veil-snapshotter"

// Name is veil-snapshotter's name in containerd's configuration: the proxy plugin
// [proxy_plugins.veil], which the guest-pull runtime handlers select with snapshotter = "veil".
const Name = "veil"

// ContainerdConfig is the containerd 2.x configuration (version 3) that makes the
// veil-snapshotter serving at address containerd's snapshotter Name:
//
//   - the proxy plugin, exporting enable_remote_snapshot_annotations so that containerd's
//     transfer service (which CRI pulls through by default in 2.x) labels each layer's
//     extraction snapshot with the image reference and the layer and manifest digests, as
//     CRI's own pull does with snapshot annotations;
//   - the transfer service's unpack configurations: the default snapshotter's (given, e.g.
//     "overlayfs", with the walking differ, as containerd's default) and Name's. Without an
//     entry for Name, CRI's PullImage for a handler whose snapshotter is Name fails with "no
//     unpack platforms defined" (containerd logs "Unpack configuration not supported"). Setting
//     unpack_config replaces containerd's default list, so the default snapshotter's entry
//     must be kept.
//
// The runtime handlers' `snapshotter = "veil"` lines belong to their own tables. address and
// defaultSnapshotter must not hold a quote or a newline.
func ContainerdConfig(address, defaultSnapshotter string) string {
	p := platforms.DefaultString()
	return fmt.Sprintf(`[proxy_plugins.%[1]s]
  type = 'snapshot'
  address = %[2]q
  [proxy_plugins.%[1]s.exports]
    enable_remote_snapshot_annotations = 'true'
[plugins.'io.containerd.transfer.v1.local']
  [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
    platform = %[3]q
    snapshotter = %[4]q
    differ = 'walking'
  [[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
    platform = %[3]q
    snapshotter = '%[1]s'
    differ = 'walking'
`, Name, address, p, defaultSnapshotter)
}

// Unit is the systemd unit that runs veil-snapshotter from bin (its absolute path) with the
// default root and socket, before containerd.
func Unit(bin string) string {
	return strings.Join([]string{
		"# veil-snapshotter: the containerd proxy snapshotter of Veil's guest-pull runtime handlers",
		"# (docs/snapshotter.md); containerd's [proxy_plugins." + Name + "] names the socket below.",
		"[Unit]",
		"Description=Veil guest-pull snapshotter (containerd proxy plugin)",
		"Before=containerd.service",
		"",
		"[Service]",
		"ExecStart=" + bin + " -root " + DefaultRoot + " -address " + DefaultAddress,
		"Restart=always",
		"RestartSec=2",
		"OOMScoreAdjust=-999",
		"",
		"[Install]",
		"WantedBy=multi-user.target",
		"",
	}, "\n")
}
