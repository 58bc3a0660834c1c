package containerdcfg

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/veil-runtime/veil/snapshotter/snapconfig"
)

// criImagesV3 is containerd 2.x's CRI images plugin (its snapshotter is CRI's default).
const criImagesV3 = "io.containerd.cri.v1.images"

// renderSnapshotter appends veil-snapshotter's proxy plugin and the transfer service's unpack
// configuration (snapconfig.ContainerdConfig) when spec names its socket. Only containerd 2.x
// can select a snapshotter per runtime handler and pull for it through the transfer service;
// 1.7 and 1.6 are refused (docs/snapshotter.md says what they can do).
func (c *Config) renderSnapshotter(b *bytes.Buffer, spec Spec) error {
	if spec.SnapshotterAddress == "" {
		return nil
	}
	if c.Version < 3 || c.CopyCRI {
		return fmt.Errorf("containerd drop-in: veil-snapshotter needs containerd 2.x (config version 3 or later); "+
			"this containerd takes version %d: install without the snapshotter (docs/snapshotter.md: containerd 1.7 and 1.6)", c.Version)
	}
	if strings.ContainsAny(spec.SnapshotterAddress, "'\"\n\r\\") {
		return fmt.Errorf("containerd drop-in: snapshotter address %q", spec.SnapshotterAddress)
	}
	if _, ok := table(c.doc, "proxy_plugins", snapconfig.Name); ok {
		c.note(fmt.Sprintf("%s declares proxy plugin %q itself; the drop-in's settings win", c.Path, snapconfig.Name))
	}
	if t, ok := table(c.doc, "plugins", "io.containerd.transfer.v1.local"); ok {
		if _, ok := t["unpack_config"]; ok {
			c.note(fmt.Sprintf("%s sets the transfer service's unpack_config; the drop-in's (%s and %s) replaces it",
				c.Path, c.defaultSnapshotter(), snapconfig.Name))
		}
	}
	b.WriteString("\n" + snapconfig.ContainerdConfig(spec.SnapshotterAddress, c.defaultSnapshotter()))
	return nil
}

// defaultSnapshotter is CRI's snapshotter in the main file, else containerd's default.
func (c *Config) defaultSnapshotter() string {
	if t, ok := table(c.doc, "plugins", criImagesV3); ok {
		if s, ok := t["snapshotter"].(string); ok && s != "" && !strings.ContainsAny(s, "'\"\n\r\\") {
			return s
		}
	}
	return "overlayfs"
}

// checkSnapshotter checks the decoded drop-in declares the proxy plugin when spec asks for it.
func checkSnapshotter(doc map[string]any, spec Spec) error {
	if spec.SnapshotterAddress == "" {
		return nil
	}
	p, _ := table(doc, "proxy_plugins", snapconfig.Name)
	if p["type"] != "snapshot" || p["address"] != spec.SnapshotterAddress {
		return fmt.Errorf("containerd drop-in: proxy plugin %s rendered as %v", snapconfig.Name, p)
	}
	return nil
}
