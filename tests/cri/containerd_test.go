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
	"strconv"
	"time"

	"github.com/veil-runtime/veil/tests/internal/busyboximage"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// bridgeName, subnet and gateway are the test's CNI network: veilcri0 on 10.88.77.0/24, or,
// with VEIL_CRI_NET=N (1-254, not 77), veilcriN on 10.88.N.0/24, so that two runs of the
// suite on one machine do not share (and delete) each other's bridge.
var bridgeName, subnet, gatewayIP = criNetwork(os.Getenv("VEIL_CRI_NET"))

func criNetwork(n string) (bridge, subnet, gateway string) {
	if i, err := strconv.Atoi(n); err == nil && i > 0 && i < 255 && i != 77 {
		return fmt.Sprintf("veilcri%d", i), fmt.Sprintf("10.88.%d.0/24", i), fmt.Sprintf("10.88.%d.1", i)
	}
	return "veilcri0", "10.88.77.0/24", "10.88.77.1"
}

// criEnv is a containerd with its CRI plugin, started for the tests in a temporary root.
type criEnv struct {
	*containerdenv.Containerd
	crictlBin      string
	snap           *containerdenv.Snapshotter // veil-snapshotter, the veil-pull handler's snapshotter
	registry       *httptest.Server
	registryHost   string // 127.0.0.1:PORT
	busybox, pause string // image references in the registry
}

// startEnv is TestMain's: it keeps VEIL_IMAGE and VEIL_BIN in imageDir and binDir, starts the
// environment (newEnv) and keeps it in env.
func startEnv(image, bin string) (containerdenv.Env, error) {
	imageDir, binDir = image, bin
	var err error
	if env, err = newEnv(); env == nil {
		return nil, err
	}
	return env, err
}

// newEnv starts the registry (with the busybox and pause images pushed), writes the
// containerd, CNI and Veil configurations and starts containerd. On an error after the
// temporary root is made, it returns the environment to stop.
func newEnv() (*criEnv, error) {
	containerd, err := containerdenv.ToolPath(binDir, "containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not found (run scripts/containerd.sh): %w", err)
	}
	crictlBin, err := containerdenv.ToolPath(binDir, "crictl")
	if err != nil {
		return nil, fmt.Errorf("crictl not found (run scripts/cri-tools.sh): %w", err)
	}
	if err := containerdenv.RequireShim(binDir); err != nil {
		return nil, err
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, fmt.Errorf("CNI plugins missing (apt-get install containernetworking-plugins): %w", err)
	}
	c, err := containerdenv.New("veil-cri-")
	if err != nil {
		return nil, err
	}
	e := &criEnv{Containerd: c, crictlBin: crictlBin}
	e.registry, e.registryHost = busyboximage.NewRegistry()
	if err := e.pushImages(); err != nil {
		return e, err
	}
	if e.snap, err = containerdenv.StartSnapshotter(binDir, c.Dir); err != nil {
		return e, err
	}
	if err := e.writeConfigs(); err != nil {
		return e, err
	}
	if err := e.Start(containerd, binDir, []string{"--log-level", "debug"}); err != nil {
		return e, err
	}
	if !waitFor(30*time.Second, func() bool {
		_, _, err := e.crictl(5*time.Second, "version")
		return err == nil
	}) {
		return e, fmt.Errorf("containerd's CRI did not come up:\n%s", containerdenv.Tail(e.LogPath, 30))
	}
	// The pause image too, with the default snapshotter, as a node's first pods do: a pod of a
	// guest-pull handler started first would pull it into veil-snapshotter only (without its
	// layers), and the other handlers could not unpack it (docs/snapshotter.md).
	for _, ref := range []string{e.busybox, e.pause} {
		if out, errOut, err := e.crictl(time.Minute, "pull", ref); err != nil {
			return e, fmt.Errorf("crictl pull %s: %w\n%s%s", ref, err, out, errOut)
		}
	}
	return e, nil
}

// writeConfigs writes containerd's config (CRI on, the veil and runc handlers, the veil-pull
// handler with veil-snapshotter as its proxy snapshotter, the pinned sandbox image from the
// test's registry), the registry's hosts.toml (plain HTTP on loopback),
// the CNI network and Veil's config.
func (e *criEnv) writeConfigs() error {
	certs := e.Path("certs.d")
	hostsDir := filepath.Join(certs, e.registryHost)
	if err := os.MkdirAll(hostsDir, 0o755); err != nil {
		return err
	}
	hosts := fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n",
		e.registry.URL, e.registry.URL)
	if err := os.WriteFile(filepath.Join(hostsDir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return err
	}
	cniDir := e.Path("cni")
	network := containerdenv.Bridge{Name: "veil-cri-test", Bridge: bridgeName, Subnet: subnet, IPAMDir: e.Path("ipam")}
	if err := network.Write(cniDir, "10-veil-test.conflist"); err != nil {
		return err
	}
	if err := containerdenv.WriteVeilConfig(e.Path("veil.toml"), imageDir); err != nil {
		return err
	}
	return e.WriteConfig(e.CRIConfig(containerdenv.CRIConfig{
		Sandbox:        e.pause,
		RegistryConfig: certs,
		VeilConfig:     e.Path("veil.toml"),
		CNIConfDir:     cniDir,
		PodAnnotations: []string{"io.veil.config.*", "io.katacontainers.config.hypervisor.cc_init_data"},
	}) + e.pullRuntime() + e.snap.ProxyPlugin()) // guestpull_test.go's handler and its snapshotter
}

// Stop removes every pod left, stops containerd and the registry, deletes the test bridge and
// removes the temporary root.
func (e *criEnv) Stop() {
	if e.Cmd != nil {
		containerdenv.RemovePods(func(args ...string) (string, error) {
			out, _, err := e.crictl(time.Minute, args...)
			return out, err
		})
		e.Terminate()
	}
	e.snap.Stop()
	if e.registry != nil {
		e.registry.Close()
	}
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	e.RemoveRoot(e.KeepRoot("tests/cri"))
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
