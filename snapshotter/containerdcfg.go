package snapshotter

import (
	"fmt"

	"github.com/containerd/platforms"
)

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
// The runtime handlers' `snapshotter = "veil"` lines belong to their own tables.
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
