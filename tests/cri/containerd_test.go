//go:build e2e

package cri

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

const (
	// bridgeName, subnet and gateway are the test's CNI network.
	bridgeName = "veilcri0"
	subnet     = "10.88.77.0/24"
	gatewayIP  = "10.88.77.1"
)

// criEnv is a containerd with its CRI plugin, started for the tests in a temporary root.
type criEnv struct {
	dir, socket, logPath string
	crictlBin            string
	registry             *httptest.Server
	registryHost         string // 127.0.0.1:PORT
	busybox, pause       string // image references in the registry
	cmd                  *exec.Cmd
}

// startEnv starts the registry (with the busybox and pause images pushed), writes the
// containerd, CNI and Veil configurations and starts containerd.
func startEnv() (*criEnv, error) {
	containerd, err := toolPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not found (run scripts/containerd.sh): %w", err)
	}
	e := &criEnv{}
	if e.crictlBin, err = toolPath("crictl"); err != nil {
		return nil, fmt.Errorf("crictl not found (run scripts/cri-tools.sh): %w", err)
	}
	if _, err := os.Stat(filepath.Join(binDir, "containerd-shim-veil-v2")); err != nil {
		return nil, fmt.Errorf("%s/containerd-shim-veil-v2 missing: build it first: %w", binDir, err)
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, fmt.Errorf("CNI plugins missing (apt-get install containernetworking-plugins): %w", err)
	}
	if e.dir, err = os.MkdirTemp("", "veil-cri-"); err != nil {
		return nil, err
	}
	e.socket = filepath.Join(e.dir, "containerd.sock")
	e.logPath = filepath.Join(e.dir, "containerd.log")
	e.registry = httptest.NewServer(registry.New(registry.Logger(nopLogger())))
	e.registryHost = strings.TrimPrefix(e.registry.URL, "http://")
	if err := e.pushImages(); err != nil {
		return e, err
	}
	if err := e.writeConfigs(); err != nil {
		return e, err
	}
	logf, err := os.Create(e.logPath)
	if err != nil {
		return e, err
	}
	e.cmd = exec.Command(containerd, "--config", filepath.Join(e.dir, "containerd.toml"), "--log-level", "debug")
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.Env = append(os.Environ(), "PATH="+binDir+":"+filepath.Join(binDir, "tools")+":"+os.Getenv("PATH"))
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		return e, fmt.Errorf("start containerd: %w", err)
	}
	if !waitFor(30*time.Second, func() bool {
		_, _, err := e.crictl(5*time.Second, "version")
		return err == nil
	}) {
		return e, fmt.Errorf("containerd's CRI did not come up:\n%s", tail(e.logPath, 30))
	}
	if out, errOut, err := e.crictl(time.Minute, "pull", e.busybox); err != nil {
		return e, fmt.Errorf("crictl pull %s: %w\n%s%s", e.busybox, err, out, errOut)
	}
	return e, nil
}

// writeConfigs writes containerd's config (CRI on, the veil and runc handlers), the
// registry's hosts.toml (plain HTTP on loopback), the CNI network and Veil's config.
func (e *criEnv) writeConfigs() error {
	certs := filepath.Join(e.dir, "certs.d")
	hostsDir := filepath.Join(certs, e.registryHost)
	if err := os.MkdirAll(hostsDir, 0o755); err != nil {
		return err
	}
	hosts := fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n",
		e.registry.URL, e.registry.URL)
	if err := os.WriteFile(filepath.Join(hostsDir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return err
	}
	cniDir := filepath.Join(e.dir, "cni")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "veil-cri-test", "plugins": [{
  "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}],
           "dataDir": %q}}]}
`, bridgeName, subnet, filepath.Join(e.dir, "ipam"))
	if err := os.WriteFile(filepath.Join(cniDir, "10-veil-test.conflist"), []byte(conf), 0o644); err != nil {
		return err
	}
	veil := fmt.Sprintf("[hypervisor]\nimage = %q\nmemory_mib = 512\nvcpus = 1\naccel = \"auto\"\nboot_timeout = \"120s\"\n", imageDir)
	if err := os.WriteFile(filepath.Join(e.dir, "veil.toml"), []byte(veil), 0o644); err != nil {
		return err
	}
	return e.writeContainerdConfig(certs, cniDir)
}

// writeContainerdConfig writes containerd.toml: CRI with the veil and runc handlers, the
// pinned sandbox image from the test's registry, CNI from Debian's plugins.
func (e *criEnv) writeContainerdConfig(certs, cniDir string) error {
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = %[3]q
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[4]q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %[5]q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil]
      runtime_type = 'io.containerd.veil.v2'
      pod_annotations = ['io.veil.config.*', 'io.katacontainers.config.hypervisor.cc_init_data']
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.veil.options]
        ConfigPath = %[6]q
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = %[7]q
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
`, filepath.Join(e.dir, "root"), filepath.Join(e.dir, "state"), e.socket, e.pause, certs,
		filepath.Join(e.dir, "veil.toml"), cniDir)
	return os.WriteFile(filepath.Join(e.dir, "containerd.toml"), []byte(cfg), 0o644)
}

// stop removes every pod left, stops containerd and the registry, deletes the test bridge and
// removes the temporary root.
func (e *criEnv) stop() {
	if e.cmd != nil && e.cmd.Process != nil {
		if out, _, err := e.crictl(time.Minute, "pods", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				_, _, _ = e.crictl(time.Minute, "stopp", id)
				_, _, _ = e.crictl(time.Minute, "rmp", "-f", id)
			}
		}
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = e.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = e.cmd.Process.Kill()
		}
	}
	if e.registry != nil {
		e.registry.Close()
	}
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	if e.dir == "" {
		return
	}
	_ = exec.Command("sh", "-c", "grep -o ' "+e.dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
	if os.Getenv("VEIL_TEST_KEEP") != "" {
		fmt.Fprintf(os.Stderr, "tests/cri: VEIL_TEST_KEEP: kept %s\n", e.dir)
		return
	}
	_ = os.RemoveAll(e.dir)
}

// hostServer serves "hello from the host" over HTTP on every host address; the pod reaches it
// on the bridge's gateway address.
func hostServer(ctx context.Context) (port int, err error) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from the host")
	})}
	go func() { _ = srv.Serve(l) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
