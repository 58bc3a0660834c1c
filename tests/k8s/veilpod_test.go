//go:build e2e

package k8s

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/shim/pod"
	"github.com/veil-runtime/veil/tests/internal/k8scluster"
)

// webScript serves /www/index.html with busybox httpd on the pod's 127.0.0.1:8080 only: inside
// the VM, where nothing from the host's side of the pod reaches it but port forwarding.
const webScript = "mkdir -p /www && echo served from inside the VM > /www/index.html && " +
	"httpd -f -p 127.0.0.1:8080 -h /www & echo hello from veil-web; echo to stderr >&2; " + idle

// testVeilHandlerPod: a pod with runtimeClassName veil (the installer's handler: the shim
// under /opt/veil) runs in one QEMU VM; logs, exec and kubectl port-forward to a server on
// the VM's loopback work; kubectl delete leaves no QEMU, virtiofsd, shim, mount, tap or
// network namespace, nor the sandbox cgroup that held QEMU, virtiofsd and the shim.
func testVeilHandlerPod(t *testing.T) {
	requireInstalled(t)
	beforeMounts, beforeNetns := k8scluster.MountsUnder("/"), netnsList()
	p, _ := runPod(t, "veil-web", "veil", webScript, 4*time.Minute)
	sandbox := sandboxOf(t, p.Metadata.UID)
	vm := pod.VMID(criNamespace, sandbox)
	if pids := qemuOf(sandbox); len(pids) != 1 {
		t.Fatalf("pod veil-web (sandbox %s): QEMU processes %v, want exactly one", sandbox[:12], pids)
	}
	shims := shimsOf(sandbox)
	if len(shims) != 1 {
		t.Fatalf("shims of sandbox %s: %v, want one", sandbox[:12], shims)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", shims[0])); exe != installDir+"/bin/containerd-shim-veil-v2" {
		t.Errorf("the pod's shim is %s, not the installed one", exe)
	}
	if fsd := virtiofsdOf(vm); len(fsd) == 0 {
		t.Errorf("no virtiofsd for VM %s", vm)
	}
	sandboxCg := checkPodCgroup(t, "veil-web", p.Metadata.UID, sandbox, vm)
	netns := newEntries(beforeNetns, netnsList())
	if len(netns) != 1 || exec.Command("nsenter", "--net="+netns[0], "ip", "link", "show", "tap0_veil").Run() != nil {
		t.Errorf("the pod's network namespace %v has no tap0_veil", netns)
	}
	kernel := checkLogsAndExec(t, "veil-web", "hello from veil-web", "to stderr")
	var host unix.Utsname
	_ = unix.Uname(&host)
	if kernel == unix.ByteSliceToString(host.Release[:]) {
		t.Fatalf("the veil pod runs on the host's kernel %s", kernel)
	}
	portForward(t, "veil-web", 8080, "served from inside the VM")

	deletePod(t, "veil-web")
	left := waitGone(func() []string {
		var l []string
		for _, x := range qemuOf(sandbox) {
			l = append(l, "qemu "+x)
		}
		for _, x := range virtiofsdOf(vm) {
			l = append(l, fmt.Sprint("virtiofsd ", x))
		}
		for _, x := range shimsOf(sandbox) {
			l = append(l, fmt.Sprint("shim ", x))
		}
		l = append(l, newMounts(beforeMounts, p.Metadata.UID, sandbox, vm)...)
		return append(l, newEntries(beforeNetns, netnsList())...)
	})
	if len(left) > 0 {
		t.Errorf("left after kubectl delete: %v", left)
	}
	if _, err := os.Stat(pod.DirOf(vm)); !os.IsNotExist(err) {
		t.Errorf("the shim's pod directory %s is left (err %v)", pod.DirOf(vm), err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory" + sandboxCg); sandboxCg != "" && !os.IsNotExist(err) {
		t.Errorf("the pod's sandbox cgroup %s is left (err %v)", sandboxCg, err)
	}
	if exec.Command("ip", "link", "show", "tap0_veil").Run() == nil {
		t.Error("a tap0_veil is in the host's network namespace")
	}
}

// portForward runs `kubectl port-forward pod/name LOCAL:port` and fetches / through it,
// wanting want in the answer.
func portForward(t *testing.T, name string, port int, want string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := l.Addr().(*net.TCPAddr).Port
	l.Close()
	start := time.Now()
	cmd := cluster.KubectlCommand("port-forward", "pod/"+name, fmt.Sprintf("%d:%d", local, port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Forwarding from 127.0.0.1:") {
				ready <- sc.Text()
			}
		}
		close(ready)
	}()
	select {
	case line, ok := <-ready:
		if !ok {
			t.Fatalf("kubectl port-forward ended: %s", stderr.String())
		}
		t.Logf("kubectl port-forward: %s", line)
	case <-time.After(time.Minute):
		t.Fatalf("kubectl port-forward did not start: %s", stderr.String())
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", local))
	if err != nil {
		t.Fatalf("through kubectl port-forward: %v (kubectl: %s)", err, stderr.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		t.Fatalf("through kubectl port-forward: HTTP %d %q, want %q", resp.StatusCode, body, want)
	}
	t.Logf("GET through kubectl port-forward to the VM's 127.0.0.1:%d: %q in %s", port, strings.TrimSpace(string(body)),
		time.Since(start).Round(time.Millisecond))
}

// newEntries lists what is in now and not in before.
func newEntries(before, now []string) []string {
	old := map[string]bool{}
	for _, b := range before {
		old[b] = true
	}
	var out []string
	for _, n := range now {
		if !old[n] {
			out = append(out, n)
		}
	}
	return out
}

// procsWhere lists the pids of the processes whose executable's base name is exe and whose
// command line has every one of subs.
func procsWhere(exe string, subs ...string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if filepath.Base(strings.TrimSuffix(target, " (deleted)")) != exe {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(string(cmdline), s)
		}
		if ok {
			pids = append(pids, pid)
		}
	}
	return pids
}

// shimsOf lists the Veil shims serving the sandbox (the cluster's containerd).
func shimsOf(sandbox string) []int {
	return procsWhere("containerd-shim-veil-v2", sandbox, cluster.ContainerdSocket())
}

// veilShims lists every Veil shim of the cluster's containerd.
func veilShims() []int { return procsWhere("containerd-shim-veil-v2", cluster.ContainerdSocket()) }

// virtiofsdOf lists the virtiofsd processes of the VM (its socket is in the VM's directory).
func virtiofsdOf(vm string) []int { return procsWhere("virtiofsd", vm) }

// pssMiB is the sum of the processes' proportional set sizes (smaps_rollup), in MiB.
func pssMiB(pids []int) (float64, error) {
	var kb int
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
				v, _ := strconv.Atoi(f[1])
				kb += v
			}
		}
	}
	return float64(kb) / 1024, nil
}
