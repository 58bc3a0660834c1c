package k8scluster

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/veil-runtime/veil/tests/internal/busyboximage"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// proc is a running component: in a process group of its own (its pid), its output in its
// log, killed with the test binary (Pdeathsig) if that dies first.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it exited
}

// startProc starts bin with args as the component name, its log in Dir/logs/name.log.
func (c *Cluster) startProc(name, bin string, args, env []string) error {
	_, err := c.startProcLog(name, bin, args, env, false)
	return err
}

// startProcLog is startProc, its log appended to when appendLog (a restart); a component of
// the same name that ran before (and exited) is replaced in the cluster's list and record.
func (c *Cluster) startProcLog(name, bin string, args, env []string, appendLog bool) (*proc, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendLog {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	logf, err := os.OpenFile(c.LogPath(name), flags, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := procRecord{Name: name, Pid: cmd.Process.Pid, Exe: bin}
	replaced := false
	for i, q := range c.procs {
		if q.name == name {
			c.procs[i], c.host.Procs[i], replaced = p, rec, true
		}
	}
	if !replaced {
		c.procs = append(c.procs, p)
		c.host.Procs = append(c.host.Procs, rec)
	}
	return p, c.host.save()
}

// stop sends the component SIGTERM, waits up to grace, then kills its process group.
func (p *proc) stop(grace time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	// Whatever it started in its group (nothing should be left) goes too.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// exited reports whether the component has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ports are the cluster's listening ports, picked free at start.
type ports struct {
	etcd, etcdPeer, apiserver, controllerManager, scheduler, kubelet, kubeletHealthz int
}

func freePorts() (ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var n [7]int
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports{}, err
		}
		ls = append(ls, l)
		n[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports{n[0], n[1], n[2], n[3], n[4], n[5], n[6]}, nil
}

// writePKI makes the CA, every certificate, the service-account keys and the kubeconfigs.
func (c *Cluster) writePKI() error {
	ca, err := newCA(c.Path("pki"))
	if err != nil {
		return err
	}
	c.ca = ca
	specs := []certSpec{
		{name: "etcd-server", cn: "etcd", ips: []string{"127.0.0.1"}, dns: []string{"localhost"}, server: true, client: true},
		{name: "apiserver-etcd-client", cn: "kube-apiserver-etcd-client", client: true},
		{name: "apiserver", cn: "kube-apiserver", server: true,
			ips: []string{"127.0.0.1", NodeIP, ServiceIP},
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local"}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}, client: true},
		{name: "admin", cn: "veil-test-admin", orgs: []string{"system:masters"}, client: true},
		{name: "kubelet-client", cn: "system:node:" + NodeName, orgs: []string{"system:nodes"}, client: true},
		{name: "kubelet-serving", cn: NodeName, ips: []string{NodeIP, "127.0.0.1"}, dns: []string{NodeName, "localhost"}, server: true},
		{name: "controller-manager", cn: "system:kube-controller-manager", client: true},
		{name: "scheduler", cn: "system:kube-scheduler", client: true},
	}
	for _, s := range specs {
		if _, _, err := ca.issue(s); err != nil {
			return fmt.Errorf("certificate %s: %w", s.name, err)
		}
	}
	if _, _, err := ca.serviceAccountKeys(); err != nil {
		return err
	}
	server := fmt.Sprintf("https://%s:%d", NodeIP, c.ports.apiserver)
	c.apiURL = server
	for _, k := range []struct{ name, user string }{
		{"admin", "veil-test-admin"}, {"kubelet-client", "system:node:" + NodeName},
		{"controller-manager", "system:kube-controller-manager"}, {"scheduler", "system:kube-scheduler"},
	} {
		if err := ca.kubeconfig(c.Path(k.name+".kubeconfig"), server, k.user,
			ca.path(k.name+".crt"), ca.path(k.name+".key")); err != nil {
			return err
		}
	}
	c.Kubeconfig = c.Path("admin.kubeconfig")
	return nil
}

func (c *Cluster) startEtcd() error {
	p := c.ca.path
	client := fmt.Sprintf("https://127.0.0.1:%d", c.ports.etcd)
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.ports.etcdPeer)
	return c.startProc("etcd", c.bins[etcdCmd], []string{
		"--name=veil-test", "--data-dir=" + c.Path("etcd"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=veil-test=" + peer, "--initial-cluster-state=new",
		"--cert-file=" + p("etcd-server.crt"), "--key-file=" + p("etcd-server.key"),
		"--trusted-ca-file=" + p("ca.crt"), "--client-cert-auth=true",
		"--unsafe-no-fsync=true", "--log-level=warn",
	}, nil)
}

func (c *Cluster) startAPIServer() error {
	p := c.ca.path
	return c.startProc("kube-apiserver", c.bins["kube-apiserver"], []string{
		fmt.Sprintf("--etcd-servers=https://127.0.0.1:%d", c.ports.etcd),
		"--etcd-cafile=" + p("ca.crt"), "--etcd-certfile=" + p("apiserver-etcd-client.crt"),
		"--etcd-keyfile=" + p("apiserver-etcd-client.key"),
		"--bind-address=" + NodeIP, fmt.Sprintf("--secure-port=%d", c.ports.apiserver),
		"--advertise-address=" + NodeIP, "--cert-dir=" + c.Path("apiserver"),
		"--tls-cert-file=" + p("apiserver.crt"), "--tls-private-key-file=" + p("apiserver.key"),
		"--client-ca-file=" + p("ca.crt"),
		"--kubelet-client-certificate=" + p("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + p("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--service-cluster-ip-range=" + ServiceRange,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p("sa.pub"), "--service-account-signing-key-file=" + p("sa.key"),
		"--allow-privileged=true", "--profiling=false",
	}, nil)
}

func (c *Cluster) startControllerManager() error {
	kc := c.Path("controller-manager.kubeconfig")
	return c.startProc("kube-controller-manager", c.bins["kube-controller-manager"], []string{
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", c.ports.controllerManager),
		"--cert-dir=" + c.Path("controller-manager"),
		"--service-account-private-key-file=" + c.ca.path("sa.key"), "--root-ca-file=" + c.ca.path("ca.crt"),
		"--use-service-account-credentials=true", "--leader-elect=false", "--profiling=false",
	}, nil)
}

func (c *Cluster) startScheduler() error {
	kc := c.Path("scheduler.kubeconfig")
	return c.startProc("kube-scheduler", c.bins["kube-scheduler"], []string{
		"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", c.ports.scheduler),
		"--cert-dir=" + c.Path("scheduler"), "--leader-elect=false", "--profiling=false",
	}, nil)
}

// startContainerd writes the CRI configuration (containerdenv's: runc the default handler,
// the veil handler with the Veil shim and the guest image, the pinned sandbox image, CNI's
// bridge on the node's bridge) and starts containerd with the Veil shim on its PATH.
func (c *Cluster) startContainerd() error {
	cd := c.containerd
	if err := os.MkdirAll(cd.Dir, 0o755); err != nil {
		return err
	}
	certs := cd.Path("certs.d")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		return err
	}
	network := containerdenv.Bridge{Name: NetworkName, Bridge: BridgeName, Subnet: PodSubnet, IPAMDir: cd.Path("ipam")}
	if err := network.Write(cd.Path("cni"), "10-veil-k8s.conflist"); err != nil {
		return err
	}
	if err := containerdenv.WriteVeilConfig(cd.Path("veil.toml"), c.opts.ImageDir); err != nil {
		return err
	}
	cfg := cd.CRIConfig(containerdenv.CRIConfig{
		Sandbox: PauseImage, RegistryConfig: certs, VeilConfig: cd.Path("veil.toml"), CNIConfDir: cd.Path("cni"),
		PodAnnotations: []string{"io.veil.config.*", "io.katacontainers.config.hypervisor.cc_init_data"},
	})
	// runc's default, said explicitly: cgroupfs, as the kubelet (no systemd here).
	cfg += "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = false\n"
	cfg += encryptedLayerProcessor(c.EncryptedLayerPath())
	if err := cd.WriteConfig(cfg); err != nil {
		return err
	}
	return c.runContainerd(false)
}

// runContainerd starts containerd on its configuration with the Veil shim on its PATH (again,
// its log appended to, when restart), records its pid in ContainerdPIDFile and watches it
// (superviseContainerd).
func (c *Cluster) runContainerd(restart bool) error {
	path := "PATH=" + c.opts.BinDir + ":" + filepath.Join(c.opts.BinDir, "tools") + ":" + os.Getenv("PATH")
	p, err := c.startProcLog("containerd", c.bins["containerd"], []string{"--config", c.containerd.ConfigPath(),
		"--log-level", "info"}, []string{path}, restart)
	if err != nil {
		return err
	}
	go c.superviseContainerd(p)
	if restart {
		return nil // the supervisor writes the pid once the new containerd serves
	}
	return writeAtomic(c.ContainerdPIDFile(), []byte(fmt.Sprintf("%d\n", p.cmd.Process.Pid)))
}

// importImages builds the pause and busybox images (busyboximage, from the host's
// busybox-static) and imports them into containerd's k8s.io namespace: no registry is needed,
// and the pods use imagePullPolicy: Never.
func (c *Cluster) importImages() error {
	layer, err := busyboximage.Static("var")
	if err != nil {
		return err
	}
	for _, im := range []struct {
		ref string
		cfg func() v1.Config
	}{{PauseImage, busyboximage.Pause}, {BusyboxImage, busyboximage.Shell}} {
		img, err := busyboximage.Image(im.cfg(), layer)
		if err != nil {
			return err
		}
		tarPath := c.Path("images", filepath.Base(im.ref)+".tar")
		if err := os.MkdirAll(filepath.Dir(tarPath), 0o755); err != nil {
			return err
		}
		if err := busyboximage.WriteTarball(tarPath, im.ref, img); err != nil {
			return err
		}
		if err := c.ImportImage(tarPath); err != nil {
			return err
		}
	}
	return nil
}

// ImportImage imports the image archive at path (docker-archive or OCI archive) into the
// containerd namespace of CRI, k8s.io, where the kubelet finds it (imagePullPolicy Never or
// IfNotPresent), with `ctr images import --local`.
func (c *Cluster) ImportImage(path string) error {
	out, err := exec.Command(c.bins["ctr"], "--address", c.containerd.Socket, "-n", "k8s.io",
		"images", "import", "--local", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s: %v: %s", path, err, out)
	}
	return nil
}

// startKubelet writes the KubeletConfiguration this host needs (docs/kubernetes-cluster.md)
// and starts the kubelet with its root directory in the cluster's directory.
func (c *Cluster) startKubelet() error {
	p := c.ca.path
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	cfg := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
		"address": NodeIP, "port": c.ports.kubelet, "readOnlyPort": 0,
		"healthzBindAddress": "127.0.0.1", "healthzPort": c.ports.kubeletHealthz,
		"tlsCertFile": p("kubelet-serving.crt"), "tlsPrivateKeyFile": p("kubelet-serving.key"),
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": p("ca.crt")},
		},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": "unix://" + c.containerd.Socket,
		"cgroupDriver":             "cgroupfs", "cgroupRoot": "/" + c.host.CgroupRoot,
		"failCgroupV1": false, "failSwapOn": false,
		"oomScoreAdj": 0, "maxOpenFiles": lim.Max,
		"imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
		"makeIPTablesUtilChains": false, "protectKernelDefaults": false,
		"podLogsDir": c.Path("pod-logs"), "volumePluginDir": c.Path("volume-plugins"),
		"clusterDomain": "cluster.local", "resolvConf": "/etc/resolv.conf",
		"registerNode": true, "serializeImagePulls": false,
		"nodeStatusReportFrequency": "10s", "fileCheckFrequency": "5s",
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.Path("kubelet.json"), data, 0o644); err != nil {
		return err
	}
	return c.startProc("kubelet", c.bins["kubelet"], []string{
		"--config=" + c.Path("kubelet.json"), "--kubeconfig=" + c.Path("kubelet-client.kubeconfig"),
		"--root-dir=" + c.Path("kubelet"), "--cert-dir=" + c.Path("kubelet", "pki"),
		"--hostname-override=" + NodeName, "--node-ip=" + NodeIP, "--v=2",
	}, nil)
}

// LogPath is the log file of the component name.
func (c *Cluster) LogPath(name string) string { return c.Path("logs", name+".log") }

// Components lists the components in start order.
func (c *Cluster) Components() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.procs))
	for i, p := range c.procs {
		names[i] = p.name
	}
	return names
}

// LogTails is the last n lines of every component's log.
func (c *Cluster) LogTails(n int) string {
	var s string
	for _, name := range c.Components() {
		s += fmt.Sprintf("==== %s (%s), last %d lines ====\n%s\n", name, c.LogPath(name), n,
			containerdenv.Tail(c.LogPath(name), n))
	}
	return s
}
