package k8scluster

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// stateDir holds the lock that lets one cluster run at a time on the machine and the record
// of what the running (or a crashed) cluster changed on the host.
const stateDir = "/run/veil-k8s"

// savedSysctls are the host settings the kubelet (vm.*, kernel.*) and CNI's bridge plugin
// (forwarding) change; teardown puts back what they were.
var savedSysctls = []string{
	"vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
	"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
}

// hostPaths are directories the kubelet makes outside its root directory whatever its
// configuration says (device-plugins under /var/lib/kubelet, the container log links) and
// CNI's result cache; teardown removes those that were not there before.
var hostPaths = []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni"}

// procRecord is a component the cluster started: its pid (also its process group) and binary.
type procRecord struct {
	Name string
	Pid  int
	Exe  string
}

// hostState is everything the cluster changed on the host, written to stateDir/state.json as
// it changes so that the next cluster can undo what a killed test binary left behind.
type hostState struct {
	Dir        string            // the cluster's temporary directory
	Bridge     string            // the bridge the harness made
	CgroupRoot string            // the kubelet's cgroupRoot, made in every hierarchy
	Socket     string            // containerd's socket (its shims name it)
	Sysctls    map[string]string // the values before the cluster
	Created    []string          // hostPaths that did not exist before
	Procs      []procRecord      // in start order
	Network    string            // the CNI network's name (its cached results)
	RootShared bool              // the cluster made / a shared mount (ShareRootMount)
	// ServiceTable is the nftables table routing the kubernetes Service to the apiserver.
	ServiceTable string
}

func statePath() string { return filepath.Join(stateDir, "state.json") }

// save writes the record.
func (h *hostState) save() error {
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath())
}

// lock takes the machine-wide cluster lock (waiting up to wait for another cluster to end)
// and returns the open lock file; closing it releases the lock.
func lock(wait time.Duration) (*os.File, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for said := false; ; time.Sleep(time.Second) {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			return f, nil
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another test cluster holds %s/lock for more than %s", stateDir, wait)
		}
		if !said {
			fmt.Fprintf(os.Stderr, "k8scluster: another test cluster runs; waiting for %s/lock\n", stateDir)
			said = true
		}
	}
}

// saveHost records the sysctls and which hostPaths exist, before anything changes them.
func (h *hostState) saveHost() error {
	h.Sysctls = map[string]string{}
	for _, k := range savedSysctls {
		if v, err := os.ReadFile(sysctlPath(k)); err == nil {
			h.Sysctls[k] = strings.TrimSpace(string(v))
		}
	}
	h.Created = nil
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			h.Created = append(h.Created, p)
		}
	}
	return h.save()
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// makeBridge makes the bridge with the node's address, replacing one left by a crashed run.
func (h *hostState) makeBridge(cidr string) error {
	_ = exec.Command("ip", "link", "del", h.Bridge).Run()
	for _, args := range [][]string{
		{"link", "add", h.Bridge, "type", "bridge"},
		{"addr", "add", cidr, "dev", h.Bridge},
		{"link", "set", h.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// cgroupHierarchies lists the mounted cgroup hierarchies (v1 controllers, name=systemd and the
// hybrid unified one).
func cgroupHierarchies() []string {
	var dirs []string
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		d := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// makeCgroupRoot makes the kubelet's cgroupRoot in every hierarchy (the kubelet refuses a
// cgroupRoot that is missing from one); the cpuset one gets the root's CPUs and memory nodes.
func (h *hostState) makeCgroupRoot() error {
	for _, hier := range cgroupHierarchies() {
		d := filepath.Join(hier, h.CgroupRoot)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", d, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(hier, f)); err == nil {
				_ = os.WriteFile(filepath.Join(d, f), v, 0o644)
			}
		}
	}
	return nil
}

// removeCgroupRoot kills what is left in the cgroupRoot and removes it, deepest first.
func (h *hostState) removeCgroupRoot() {
	if h.CgroupRoot == "" {
		return
	}
	for _, hier := range cgroupHierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(hier, h.CgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if data, err := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs")); err == nil {
				for _, pid := range strings.Fields(string(data)) {
					var n int
					if _, err := fmt.Sscan(pid, &n); err == nil && n > 1 {
						_ = syscall.Kill(n, syscall.SIGKILL)
					}
				}
			}
			for try := 0; try < 20; try++ {
				if err := os.Remove(dirs[i]); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// MountsUnder lists the mount points below dir (dir included), deepest last.
func MountsUnder(dir string) []string {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil
	}
	var points []string
	for _, m := range infos {
		points = append(points, m.Mountpoint)
	}
	sort.Strings(points)
	return points
}

// unmountUnder detaches every mount below dir, deepest first, until none is left.
func unmountUnder(dir string) {
	for try := 0; try < 5; try++ {
		points := MountsUnder(dir)
		if len(points) == 0 {
			return
		}
		for i := len(points) - 1; i >= 0; i-- {
			_ = unix.Unmount(points[i], unix.MNT_DETACH)
		}
	}
}

// teardown undoes the host changes once the processes are gone: shims, mounts, the bridge,
// the sysctls, the cgroups, the paths the kubelet made, and the directory unless keep.
func (h *hostState) teardown(keep bool) {
	h.killShims()
	if h.Dir != "" {
		unmountUnder(h.Dir)
	}
	h.unshareRoot()
	h.unrouteAPIService()
	if h.Bridge != "" {
		_ = exec.Command("ip", "link", "del", h.Bridge).Run()
	}
	for k, v := range h.Sysctls {
		if cur, err := os.ReadFile(sysctlPath(k)); err == nil && strings.TrimSpace(string(cur)) != v {
			_ = os.WriteFile(sysctlPath(k), []byte(v), 0o644)
		}
	}
	h.removeCgroupRoot()
	if h.Network != "" {
		left, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", h.Network+"-*"))
		for _, p := range left {
			_ = os.Remove(p)
		}
	}
	for _, p := range h.Created {
		unmountUnder(p)
		if p == "/var/lib/cni" { // shared with other suites: only when empty
			_ = os.Remove(filepath.Join(p, "results"))
			_ = os.Remove(p)
			continue
		}
		_ = os.RemoveAll(p)
	}
	if h.Dir != "" && !keep {
		_ = os.RemoveAll(h.Dir)
	}
}
