//go:build e2e

package e2e

// The hostile-host harness: a test boots a sim-TEE VM the way the shim does (a shared host
// directory as the pod's share, a tap for the guest's network, a registry the guest pulls
// from, initdata with a veil-genpolicy policy or allow-all) and then acts as the host: it
// sends raw agent requests, honest ones as the shim would and hostile ones as a malicious
// shim would, and looks at what the host can see afterwards.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

// hostilePolicy is what a VM's initdata enforces.
type hostilePolicy string

const (
	polGenerated hostilePolicy = "genpolicy"          // veil-genpolicy --guest-pull for hostilePodYAML
	polWithhold  hostilePolicy = "genpolicy-withhold" // the same with withhold_output
	polAllowAll  hostilePolicy = "allow-all"          // policies.AllowAll: the agent's own checks only
)

const (
	hostileSandboxID = "hostile-pod" // CreateSandbox's id, and the sandbox container's
	hostileHostname  = "hostile"     // the pod's host name (CreateSandbox, /etc/hostname)
	hostileRepo      = "veil-test/busybox:latest"
	hostileMarker    = "host-code-ran"   // what every program the host plants prints
	hostileSecret    = "app-secret-4711" // app's APP_TOKEN: a guest secret
)

// hostileScript is a program the host plants: busybox's shell running it prints the marker.
const hostileScript = "#!/bin/busybox sh\necho " + hostileMarker + "\n"

// hostileEnv is one VM under a hostile host, and everything the host made for it.
type hostileEnv struct {
	policy   hostilePolicy
	vmID     string
	share    string // the host directory shared as api.ShareTag, mounted at api.SharedDir
	tap, mac string
	subnet   string // 10.213.N
	regLoop  string // 127.0.0.1:port: genpolicy's view of the registry
	regGuest string // <tap ip>:port: the guest's
	guestRef string // the image as the guest pulls it
	digest   string // its manifest digest, the policy's pin
	workload *genpolicy.Workload
	sb       *sandbox.Sandbox
	closers  []func() error // run in reverse by close
	closed   bool
	ids      atomic.Int64
	// sandboxJoined: pod containers join the sandbox container's ipc and uts namespaces (the
	// sandbox container runs).
	sandboxJoined bool
}

// hostileImage is the sim guest image, built once per test binary (the kernel comes from
// veil-image's cache, so this packs an initrd with a new sim authority).
var hostileImage struct {
	once sync.Once
	dir  string
	err  error
}

const hostileImagePrefix = "veil-e2e-hostile-image-"

func hostileSimImage(t *testing.T) string {
	t.Helper()
	hostileImage.once.Do(func() {
		sweepHostileImages()
		dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", hostileImagePrefix, os.Getpid()))
		if err != nil {
			hostileImage.err = err
			return
		}
		auth, image := filepath.Join(dir, "sim"), filepath.Join(dir, "image")
		for _, args := range [][]string{
			{"sim-authority", "--out", auth},
			{"build", kernelFlag(), "--init", filepath.Join(binDir, "veil-init"), "--agent", filepath.Join(binDir, "veil-agent"),
				"--sim-authority", filepath.Join(auth, sim.AuthorityFile), "--out", image},
		} {
			if out, err := exec.Command(filepath.Join(binDir, "veil-image"), args...).CombinedOutput(); err != nil {
				hostileImage.err = fmt.Errorf("veil-image %s: %v\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
		hostileImage.dir = image
	})
	if hostileImage.err != nil {
		t.Fatalf("sim guest image: %v", hostileImage.err)
	}
	return hostileImage.dir
}

// removeHostileImage removes this test binary's sim image (TestMain calls it).
func removeHostileImage() {
	if hostileImage.dir != "" {
		_ = os.RemoveAll(filepath.Dir(hostileImage.dir))
	}
}

// sweepHostileImages removes the sim images that earlier test binaries left behind when they
// were killed before TestMain could remove them.
func sweepHostileImages() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), hostileImagePrefix+"*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(strings.TrimPrefix(filepath.Base(d), hostileImagePrefix), "%d-", &pid); err != nil {
			continue
		}
		if pid != os.Getpid() && unix.Kill(pid, 0) == unix.ESRCH {
			_ = os.RemoveAll(d)
		}
	}
}

// newHostileEnv boots a VM whose initdata enforces p, with its network, registry and share,
// and creates the sandbox. Everything is undone when the test ends. mods change the VM's
// options before the boot (a scratch disk, the memory).
func newHostileEnv(t *testing.T, p hostilePolicy, mods ...func(*sandbox.Options)) *hostileEnv {
	t.Helper()
	image := hostileSimImage(t)
	dir := t.TempDir() // before e.close is registered: removed after the share is unmounted
	e := &hostileEnv{policy: p, vmID: fmt.Sprintf("e2e-hostile-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)}
	t.Cleanup(func() {
		if t.Failed() && e.sb != nil {
			t.Logf("guest console of %s:\n%s", e.vmID, sandbox.ConsoleTail(e.sb.VM.ConsoleLog(), 80))
		}
		if err := e.close(); err != nil {
			t.Errorf("hostile env cleanup: %v", err)
		}
	})
	c, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := e.setUpTap(); err != nil {
		t.Fatal(err)
	}
	if err := e.startRegistry(); err != nil {
		t.Fatal(err)
	}
	if err := e.makeShare(dir); err != nil {
		t.Fatal(err)
	}
	raw, err := e.initData(c)
	if err != nil {
		t.Fatal(err)
	}
	opts := sandbox.Options{
		ID: e.vmID, ImageDir: image, InitData: raw,
		TEE:        hypervisor.TEEConfig{Kind: hypervisor.TEESim},
		SharedDirs: []hypervisor.SharedDir{{Tag: api.ShareTag, HostPath: e.share}},
		Network:    &hypervisor.Network{TapName: e.tap, MAC: e.mac},
	}
	for _, m := range mods {
		m(&opts)
	}
	e.sb, err = sandbox.Boot(c, opts)
	if err != nil {
		t.Fatalf("boot %s (%s): %v", e.vmID, p, err)
	}
	e.closers = append(e.closers, func() error { return e.sb.Close(context.Background()) })
	if err := e.configureGuest(c); err != nil {
		t.Fatal(err)
	}
	t.Logf("VM %s: policy %s, share %s, tap %s (%s.1), registry %s, image digest %s",
		e.vmID, p, e.share, e.tap, e.subnet, e.regGuest, e.digest)
	return e
}

// close undoes everything, newest first; safe to call twice.
func (e *hostileEnv) close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	var errs []error
	for i := len(e.closers) - 1; i >= 0; i-- {
		if err := e.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func hostileRun(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

var hostileSubnets atomic.Int64

// setUpTap makes a tap in the host's network namespace with the first free 10.213.N.1/24.
func (e *hostileEnv) setUpTap() error {
	used := map[string]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		used[a.String()] = true
	}
	start := int(hostileSubnets.Add(1)) + os.Getpid()%200
	for i := 0; i < 250; i++ {
		n := (start+i)%250 + 1
		name := fmt.Sprintf("veilh%d", n)
		if _, err := net.InterfaceByName(name); err == nil || used[fmt.Sprintf("10.213.%d.1/24", n)] {
			continue
		}
		if err := hostileRun("ip", "tuntap", "add", "dev", name, "mode", "tap"); err != nil {
			return err
		}
		e.closers = append(e.closers, func() error { return hostileRun("ip", "link", "del", name) })
		e.tap, e.subnet = name, fmt.Sprintf("10.213.%d", n)
		e.mac = fmt.Sprintf("52:54:00:d5:%02x:02", n)
		if err := hostileRun("ip", "addr", "add", e.subnet+".1/24", "dev", name); err != nil {
			return err
		}
		return hostileRun("ip", "link", "set", name, "up")
	}
	return errors.New("no free 10.213.N.0/24 for the tap")
}

// startRegistry serves an in-memory registry on loopback (for genpolicy, which allows plain
// HTTP to loopback only) and on the tap's address (for the guest), and pushes busybox to it.
func (e *hostileEnv) startRegistry() error {
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	e.closers = append(e.closers, srv.Close)
	for _, addr := range []string{"127.0.0.1:0", e.subnet + ".1:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go func() { _ = srv.Serve(l) }()
		if strings.HasPrefix(addr, "127.") {
			e.regLoop = l.Addr().String()
		} else {
			e.regGuest = l.Addr().String()
		}
	}
	layer, err := busyboximage.Static()
	if err != nil {
		return err
	}
	img, err := busyboximage.Image(busyboximage.Shell(), layer)
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	e.digest, e.guestRef = d.String(), e.regGuest+"/"+hostileRepo
	return busyboximage.Push(e.regLoop+"/"+hostileRepo, img)
}

// makeShare creates the pod's share below dir as the shim does (shim/pod makeSharedDir): a
// shared bind mount of itself.
func (e *hostileEnv) makeShare(dir string) error {
	e.share = filepath.Join(dir, "shared")
	if err := os.MkdirAll(e.share, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(e.share, e.share, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s onto itself: %w", e.share, err)
	}
	e.closers = append(e.closers, func() error { return unmountAll(e.share) })
	if err := unix.Mount("", e.share, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", e.share, err)
	}
	return nil
}

// unmountAll unmounts every mount at or below dir, deepest first, and removes dir.
func unmountAll(dir string) error {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return err
	}
	sort.Slice(infos, func(i, j int) bool { return len(infos[i].Mountpoint) > len(infos[j].Mountpoint) })
	for _, m := range infos {
		if err := unix.Unmount(m.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", m.Mountpoint, err)
		}
	}
	return os.RemoveAll(dir)
}

// initData makes the VM's initdata: veil-genpolicy's policy for hostilePodYAML (images
// resolved on loopback, the sandbox image busybox), or allow-all; with veil.toml letting the
// agent pull from the registry on the tap over plain HTTP either way.
func (e *hostileEnv) initData(ctx context.Context) ([]byte, error) {
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n", e.regGuest)
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = e.regLoop + "/" + hostileRepo
	res, err := genpolicy.Generate(ctx, []byte(hostilePodYAML(e.regLoop+"/"+hostileRepo)), genpolicy.Options{
		Resolver:       &genpolicy.RegistryResolver{PlainHTTPLoopback: true},
		Settings:       settings,
		GuestPull:      true,
		WithholdOutput: e.policy == polWithhold,
		ExtraData:      map[string]string{initdata.KeyAgent: veilTOML},
	})
	if err != nil {
		return nil, err
	}
	e.workload = &res.Workloads[0]
	if e.policy == polAllowAll {
		return initdata.Marshal("sha256", map[string]string{initdata.KeyPolicy: policies.AllowAll, initdata.KeyAgent: veilTOML})
	}
	return e.workload.InitData, nil
}

// configureGuest gives the guest its address on the tap's subnet and creates the sandbox with
// the share mounted, as the shim does.
func (e *hostileEnv) configureGuest(c context.Context) error {
	_, err := e.sb.Agent.UpdateInterface(c, &api.UpdateInterfaceRequest{Interface: &api.Interface{
		Name: "eth0", HwAddr: e.mac, Up: true, Addresses: []*api.IPAddress{{Cidr: e.subnet + ".2/24"}},
	}})
	if err != nil {
		return fmt.Errorf("UpdateInterface: %w", err)
	}
	_, err = e.sb.Agent.UpdateRoutes(c, &api.UpdateRoutesRequest{Routes: &api.Routes{Routes: []*api.Route{
		{Dest: e.subnet + ".0/24", Device: "eth0", Source: e.subnet + ".2"},
	}}})
	if err != nil {
		return fmt.Errorf("UpdateRoutes: %w", err)
	}
	_, err = e.sb.Agent.CreateSandbox(c, &api.CreateSandboxRequest{
		SandboxId: hostileSandboxID, Hostname: hostileHostname, Dns: []string{"nameserver " + e.subnet + ".1"},
		Storages: []*api.Storage{{Driver: api.DriverVirtioFS, Source: api.ShareTag, MountPoint: api.SharedDir}},
	})
	if err != nil {
		return fmt.Errorf("CreateSandbox: %w", err)
	}
	return nil
}

// newID returns a container id not used before in this VM.
func (e *hostileEnv) newID(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, e.ids.Add(1))
}

// hostPath is the host's path of a guest path below api.SharedDir.
func (e *hostileEnv) hostPath(guest string) string {
	rel, ok := strings.CutPrefix(guest, api.SharedDir+"/")
	if !ok {
		panic("not below the share: " + guest)
	}
	return filepath.Join(e.share, rel)
}

func hostileCtx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}
