// Package k8scluster is the harness of the Kubernetes suite (tests/k8s): a real single-node
// Kubernetes v1.34 on this machine — etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and the kubelet, built by scripts/kubernetes.sh into /var/cache/veil — with
// a containerd 2.4 of its own whose CRI plugin has the runc handler and the Veil handler
// (`veil`, the shim in VEIL_BIN with the guest image in VEIL_IMAGE). Certificates are made
// here (crypto/x509), everything listens on 127.0.0.1 or on a bridge the harness makes
// (veilk8s0, 10.89.0.1/24, which is also the node's address and CNI's bridge), the images
// (pause, busybox) are imported into containerd without a registry, and Stop removes every
// process, mount, network namespace, cgroup, sysctl change and directory the cluster made.
// One cluster runs at a time on a machine (a lock in /run/veil-k8s); a cluster whose test
// binary died is cleaned up by the next one. docs/kubernetes-cluster.md describes it.
//
// It is test support: only packages under tests/ can import it.
package k8scluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// The cluster's versions, names and addresses.
const (
	KubernetesVersion = "v1.34.4"
	EtcdVersion       = "v3.6.6"
	NodeName          = "veil-k8s-node"
	BridgeName        = "veilk8s0"     // the node's bridge and CNI's
	NetworkName       = "veil-k8s"     // the CNI network
	NodeIP            = "10.89.0.1"    // the bridge's address: the node's InternalIP
	PodSubnet         = "10.89.0.0/24" // pods get addresses from host-local in it
	ServiceRange      = "10.96.0.0/16" // ClusterIPs (nothing routes them: no kube-proxy)
	ServiceIP         = "10.96.0.1"    // the kubernetes Service
	PauseImage        = "registry.k8s.io/pause:3.10"
	BusyboxImage      = "veil.test/busybox:1.0" // busybox-static; pods use imagePullPolicy: Never
	VeilHandler       = "veil"                  // containerd's runtime handler for the Veil shim
	etcdCmd           = "etcd"
)

// Options are what Start needs from the suite.
type Options struct {
	ImageDir string // the guest image (VEIL_IMAGE)
	BinDir   string // the Veil shim; containerd, ctr and crictl in BinDir/tools (VEIL_BIN)
	CacheDir string // scripts/kubernetes.sh's cache; "" is $VEIL_CACHE or /var/cache/veil
	Keep     bool   // keep the directory (logs, configurations) after Stop
}

// Cluster is a running cluster.
type Cluster struct {
	Dir        string        // everything of the cluster: configurations, state, logs
	Kubeconfig string        // the admin's (system:masters) kubeconfig
	StartTime  time.Duration // from Start to the node Ready and the default service account
	Timings    []string      // when each component was ready, from Start

	opts       Options
	bins       map[string]string
	ports      ports
	ca         *ca
	apiURL     string
	client     *http.Client // the admin's
	containerd *containerdenv.Containerd
	host       *hostState
	lockFile   *os.File
	began      time.Time

	mu        sync.Mutex
	procs     []*proc
	stopping  bool // Stop began: containerd is not restarted any more
	supervise bool // restart containerd when it exits (ContainerdRestartCommand)
	restarts  int  // containerd restarts so far
	restartMu sync.Mutex
	stopOnce  sync.Once
}

// Binaries finds the cluster's binaries: the Kubernetes ones and etcd in the cache
// scripts/kubernetes.sh fills, containerd, ctr and crictl in binDir/tools. Its error says what
// to run.
func Binaries(cacheDir, binDir string) (map[string]string, error) {
	bins := map[string]string{etcdCmd: filepath.Join(cacheDir, "etcd", EtcdVersion, "bin", "etcd")}
	k8sDir := filepath.Join(cacheDir, "kubernetes", KubernetesVersion, "bin")
	var missing []string
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", etcdCmd} {
		if name != etcdCmd {
			bins[name] = filepath.Join(k8sDir, name)
		}
		if fi, err := os.Stat(bins[name]); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, bins[name])
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("Kubernetes %s / etcd %s binaries missing (%s): run `make kubernetes` "+
			"(scripts/kubernetes.sh builds them into %s once: 8–16 min on 2 cores)",
			KubernetesVersion, EtcdVersion, strings.Join(missing, ", "), cacheDir)
	}
	for name, target := range map[string]string{"containerd": "make containerd", "ctr": "make containerd", "crictl": "make cri-tools"} {
		p, err := containerdenv.ToolPath(binDir, name)
		if err != nil {
			return nil, fmt.Errorf("%s not found in %s/tools: run `%s`", name, binDir, target)
		}
		if bins[name], err = filepath.Abs(p); err != nil {
			return nil, err
		}
	}
	return bins, nil
}

// CacheDir is $VEIL_CACHE, or /var/cache/veil.
func CacheDir() string {
	if d := os.Getenv("VEIL_CACHE"); d != "" {
		return d
	}
	return "/var/cache/veil"
}

// Start starts a cluster and returns when its node is Ready and pods can be created. On an
// error after it made something, it also returns the cluster: print its LogTails, then Stop it.
func Start(opts Options) (*Cluster, error) {
	if opts.CacheDir == "" {
		opts.CacheDir = CacheDir()
	}
	bins, err := Binaries(opts.CacheDir, opts.BinDir)
	if err != nil {
		return nil, err
	}
	if err := containerdenv.RequireShim(opts.BinDir); err != nil {
		return nil, fmt.Errorf("%w (run `make build`)", err)
	}
	if _, err := os.Stat(filepath.Join(opts.ImageDir, "manifest.json")); err != nil {
		return nil, fmt.Errorf("no guest image in %s (run `make image`): %w", opts.ImageDir, err)
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, fmt.Errorf("CNI plugins missing (scripts/install-deps.sh installs containernetworking-plugins): %w", err)
	}
	lockFile, err := lock(15 * time.Minute)
	if err != nil {
		return nil, err
	}
	cleanStale(bins, opts.BinDir)
	c := &Cluster{opts: opts, bins: bins, lockFile: lockFile, began: time.Now()}
	if c.Dir, err = os.MkdirTemp("", "veil-k8s-"); err != nil {
		lockFile.Close()
		return nil, err
	}
	c.containerd = containerdenv.At(c.Path("containerd"))
	c.host = &hostState{Dir: c.Dir, Bridge: BridgeName, CgroupRoot: "veil-k8s", Socket: c.containerd.Socket,
		Network: NetworkName}
	if err := c.start(); err != nil {
		return c, err
	}
	c.StartTime = time.Since(c.began)
	return c, nil
}

// start brings the components up: etcd, the apiserver, controller-manager and scheduler on
// one side, containerd and the images on the other, then the kubelet.
func (c *Cluster) start() error {
	if err := os.MkdirAll(c.Path("logs"), 0o755); err != nil {
		return err
	}
	if err := c.host.saveHost(); err != nil {
		return err
	}
	var err error
	if c.ports, err = freePorts(); err != nil {
		return err
	}
	if err := c.writePKI(); err != nil {
		return err
	}
	if c.client, err = c.httpClient("admin"); err != nil {
		return err
	}
	if err := c.host.makeBridge(NodeIP + "/24"); err != nil {
		return err
	}
	if err := c.host.makeCgroupRoot(); err != nil {
		return err
	}
	runtime := make(chan error, 1)
	go func() { runtime <- c.startRuntime() }()
	controlErr := c.startControlPlane()
	if err := <-runtime; err != nil {
		return err
	}
	if controlErr != nil {
		return controlErr
	}
	if err := c.startKubelet(); err != nil {
		return err
	}
	if err := c.waitFor("kubelet", "node "+NodeName+" Ready", 2*time.Minute, c.nodeReady); err != nil {
		return err
	}
	// The kubelet only warns about a configuration field it does not know, and ignores it.
	log, _ := os.ReadFile(c.LogPath("kubelet"))
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "strict decoding error") {
			return fmt.Errorf("the kubelet ignored part of %s: %s", c.Path("kubelet.json"), line)
		}
	}
	// Pods need the default service account and the CA bundle of their kube-api-access volume.
	return c.waitFor("kube-controller-manager", "default service account and kube-root-ca.crt", time.Minute, func() bool {
		for _, p := range []string{"serviceaccounts/default", "configmaps/kube-root-ca.crt"} {
			if _, code, err := c.Get("/api/v1/namespaces/default/" + p); err != nil || code != http.StatusOK {
				return false
			}
		}
		return true
	})
}

func (c *Cluster) startControlPlane() error {
	if err := c.startEtcd(); err != nil {
		return err
	}
	etcdClient, err := c.httpClient("apiserver-etcd-client")
	if err != nil {
		return err
	}
	if err := c.waitFor("etcd", "etcd healthy", time.Minute, func() bool {
		resp, err := etcdClient.Get(fmt.Sprintf("https://127.0.0.1:%d/health", c.ports.etcd))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(body), `"health":"true"`)
	}); err != nil {
		return err
	}
	if err := c.startAPIServer(); err != nil {
		return err
	}
	// Not earlier: the controller-manager and the scheduler exit when RBAC's bootstrap roles
	// are not there yet (readyz waits for them).
	if err := c.waitFor("kube-apiserver", "kube-apiserver ready", 2*time.Minute, func() bool {
		_, code, err := c.Get("/readyz")
		return err == nil && code == http.StatusOK
	}); err != nil {
		return err
	}
	// Pods reach the API at the kubernetes Service (KUBERNETES_SERVICE_HOST): route it.
	if err := c.host.routeAPIService(c.ports.apiserver); err != nil {
		return err
	}
	if err := c.startControllerManager(); err != nil {
		return err
	}
	return c.startScheduler()
}

func (c *Cluster) startRuntime() error {
	if err := c.startContainerd(); err != nil {
		return err
	}
	if err := c.waitFor("containerd", "containerd serving", time.Minute, func() bool {
		return exec.Command(c.bins["ctr"], "--address", c.containerd.Socket, "version").Run() == nil
	}); err != nil {
		return err
	}
	if err := c.importImages(); err != nil {
		return err
	}
	c.mark("images imported")
	return nil
}

// waitFor polls cond until it holds (recording what in Timings) or d passed or the component
// name exited.
func (c *Cluster) waitFor(name, what string, d time.Duration, cond func() bool) error {
	var p *proc
	c.mu.Lock()
	for _, q := range c.procs {
		if q.name == name {
			p = q
		}
	}
	c.mu.Unlock()
	exited := false
	ok := containerdenv.WaitFor(d, 100*time.Millisecond, func() bool {
		exited = p != nil && p.exited()
		return exited || cond()
	})
	switch {
	case exited:
		return fmt.Errorf("%s exited while waiting for %s (log %s):\n%s", name, what, c.LogPath(name),
			containerdenv.Tail(c.LogPath(name), 30))
	case !ok:
		return fmt.Errorf("no %s after %s (log %s):\n%s", what, d, c.LogPath(name), containerdenv.Tail(c.LogPath(name), 30))
	}
	c.mark(what)
	return nil
}

func (c *Cluster) mark(what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Timings = append(c.Timings, fmt.Sprintf("%s at %.1f s", what, time.Since(c.began).Seconds()))
}

// nodeReady reports whether the node's Ready condition is True.
func (c *Cluster) nodeReady() bool {
	body, code, err := c.Get("/api/v1/nodes/" + NodeName)
	if err != nil || code != http.StatusOK {
		return false
	}
	var node struct {
		Status struct {
			Conditions []struct{ Type, Status string }
		}
	}
	if json.Unmarshal(body, &node) != nil {
		return false
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" {
			return cond.Status == "True"
		}
	}
	return false
}

// httpClient is an HTTPS client with the client certificate pki/name.crt, trusting the CA.
func (c *Cluster) httpClient(name string) (*http.Client, error) {
	cert, err := tls.LoadX509KeyPair(c.ca.path(name+".crt"), c.ca.path(name+".key"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}, nil
}

// Get is a GET of path on the apiserver as the admin: the body and the status code.
func (c *Cluster) Get(path string) ([]byte, int, error) {
	resp, err := c.client.Get(c.apiURL + path)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp.StatusCode, err
}

// Path is the path of elem in the cluster's directory.
func (c *Cluster) Path(elem ...string) string {
	return filepath.Join(append([]string{c.Dir}, elem...)...)
}

// ContainerdDir is the root of the cluster's containerd (its state and network namespaces
// are below it).
func (c *Cluster) ContainerdDir() string { return c.containerd.Dir }

// Kubectl runs kubectl as the admin with args (and stdin, "" for none), within timeout, and
// returns its stdout; its error has the stderr.
func (c *Cluster) Kubectl(timeout time.Duration, stdin string, args ...string) (string, error) {
	return c.run(timeout, stdin, c.bins["kubectl"], append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}

// Crictl runs crictl against the cluster's containerd, within timeout, and returns its stdout.
func (c *Cluster) Crictl(timeout time.Duration, args ...string) (string, error) {
	ep := "unix://" + c.containerd.Socket
	return c.run(timeout, "", c.bins["crictl"], append([]string{"--runtime-endpoint", ep,
		"--image-endpoint", ep, "--timeout", timeout.String()}, args...)...)
}

func (c *Cluster) run(timeout time.Duration, stdin, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err,
			strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Stop stops every component (the kubelet first, then the pods through CRI, containerd and the
// control plane), undoes the host changes and removes the directory (unless Options.Keep).
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.restartMu.Lock() // a containerd restart under way finishes first
		c.mu.Lock()
		c.stopping = true
		procs := append([]*proc(nil), c.procs...)
		c.mu.Unlock()
		c.restartMu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			p := procs[i]
			switch p.name {
			case "containerd":
				if !p.exited() {
					containerdenv.RemovePods(func(args ...string) (string, error) { return c.Crictl(time.Minute, args...) })
				}
				p.stop(20 * time.Second)
			default:
				p.stop(15 * time.Second)
			}
		}
		c.host.teardown(c.opts.Keep)
		if c.opts.Keep {
			fmt.Fprintf(os.Stderr, "k8scluster: kept %s\n", c.Dir)
		}
		_ = os.Remove(statePath())
		c.lockFile.Close()
	})
}

// Main is the TestMain of a suite with a cluster: it reads VEIL_IMAGE and VEIL_BIN, starts the
// cluster (printing its start time), hands it to set, runs the tests, prints the tails of
// every component's log when something failed, stops the cluster (on SIGINT and SIGTERM too)
// and exits with the tests' code. suite prefixes its messages.
func Main(m *testing.M, suite string, set func(*Cluster)) {
	imageDir, binDir := os.Getenv("VEIL_IMAGE"), os.Getenv("VEIL_BIN")
	if imageDir == "" || binDir == "" {
		fmt.Fprintf(os.Stderr, "%s: VEIL_IMAGE and VEIL_BIN are not set (VEIL_IMAGE=$PWD/build/image VEIL_BIN=$PWD/bin)\n", suite)
		os.Exit(1)
	}
	c, err := Start(Options{ImageDir: imageDir, BinDir: binDir, Keep: os.Getenv("VEIL_TEST_KEEP") != ""})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: the cluster did not start: %v\n", suite, err)
		if c != nil {
			fmt.Fprint(os.Stderr, c.LogTails(40))
			c.Stop()
		}
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "%s: cluster up in %.1f s (%s); logs in %s\n", suite, c.StartTime.Seconds(),
		strings.Join(c.Timings, ", "), c.Path("logs"))
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "%s: %s: stopping the cluster\n", suite, s)
		c.Stop()
		os.Exit(130)
	}()
	set(c)
	code := m.Run()
	if code != 0 {
		fmt.Fprint(os.Stderr, c.LogTails(40))
	}
	stopping := time.Now()
	c.Stop()
	fmt.Fprintf(os.Stderr, "%s: cluster stopped and removed in %.1f s\n", suite, time.Since(stopping).Seconds())
	os.Exit(code)
}
