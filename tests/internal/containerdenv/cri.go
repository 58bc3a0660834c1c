package containerdenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CRIConfig is containerd.toml (version 3) for a containerd with its CRI plugin: the veil
// handler (the Veil shim) and the runc handler, runc the default; overlayfs; a pinned sandbox
// image; registry hosts from a certs.d directory; CNI plugins from Debian's
// containernetworking-plugins (/usr/lib/cni); the streaming server on loopback.
type CRIConfig struct {
	Sandbox        string   // the pinned sandbox (pause) image
	RegistryConfig string   // the certs.d directory of hosts.toml files
	VeilConfig     string   // the veil handler's ConfigPath (veil.toml)
	CNIConfDir     string   // the CNI network configurations
	PodAnnotations []string // the annotations the veil handler passes to the shim (globs)
	NRISocket      string   // NRI's socket; "" disables NRI
}

// CRIConfig renders cfg for c: root and state under c.Dir, gRPC on c.Socket.
func (c *Containerd) CRIConfig(cfg CRIConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version = 3\nroot = %q\nstate = %q\n", c.Path("root"), c.Path("state"))
	if cfg.NRISocket == "" {
		b.WriteString("disabled_plugins = [\"io.containerd.nri.v1.nri\"]\n")
	}
	annotations := make([]string, len(cfg.PodAnnotations))
	for i, a := range cfg.PodAnnotations {
		annotations[i] = "'" + a + "'"
	}
	fmt.Fprintf(&b, `[grpc]
  address = %q
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil]
      runtime_type = 'io.containerd.veil.v2'
      pod_annotations = [%s]
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil.options]
        ConfigPath = %q
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = %q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`, c.Socket, cfg.Sandbox, cfg.RegistryConfig, strings.Join(annotations, ", "), cfg.VeilConfig, cfg.CNIConfDir)
	if cfg.NRISocket != "" {
		fmt.Fprintf(&b, "[plugins.'io.containerd.nri.v1.nri']\n  disable = false\n  socket_path = %q\n", cfg.NRISocket)
	}
	return b.String()
}

// Bridge is a CNI network of the bridge plugin, the host the gateway, addresses from
// host-local, optionally with portmap (for hostPort).
type Bridge struct {
	Name    string // the network's name
	Bridge  string // the bridge device's name
	Subnet  string
	IPAMDir string // host-local's dataDir
	IPMasq  bool
	PortMap bool
}

// Conflist is the network's configuration list (JSON).
func (n Bridge) Conflist() string {
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [{
  "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": %t, "hairpinMode": true,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}],
           "dataDir": %q}}`, n.Name, n.Bridge, n.IPMasq, n.Subnet, n.IPAMDir)
	if n.PortMap {
		conf += `,
  {"type": "portmap", "capabilities": {"portMappings": true}}`
	}
	return conf + "]}\n"
}

// Write writes the conflist to confDir/file, making confDir.
func (n Bridge) Write(confDir, file string) error {
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(confDir, file), []byte(n.Conflist()), 0o644)
}

// RemovePods stops and removes every pod, with crictl running crictl with args and returning
// its stdout.
func RemovePods(crictl func(args ...string) (string, error)) {
	out, err := crictl("pods", "-q")
	if err != nil {
		return
	}
	for _, id := range strings.Fields(out) {
		_, _ = crictl("stopp", id)
		_, _ = crictl("rmp", "-f", id)
	}
}
