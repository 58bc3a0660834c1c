//go:build e2e

package k8s

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/deploy/installer/hostcheck"
)

// TestDaemonSet installs Veil with its DaemonSet as a user would (docs/kubernetes.md), runs a
// plain Veil pod and a confidential one (veil-sim: guest pull, an encrypted image, the KBS in
// the cluster, a veil-genpolicy policy), checks what must be refused, and uninstalls. The
// steps run in order; each one installs first if an earlier step was not run (-run).
func TestDaemonSet(t *testing.T) {
	for _, step := range []struct {
		name string
		test func(*testing.T)
	}{
		{"install", testInstall},
		{"veil-pod", testVeilHandlerPod},
		{"confidential-pod", testConfidentialPod},
		{"veil-snp-pending", testSNPPending},
		{"bad-input", testBadInput},
		{"uninstall", testUninstall},
	} {
		if !t.Run(step.name, step.test) && step.name == "install" {
			return
		}
	}
}

// kvmUsable says whether QEMU runs a guest under KVM on this machine, as the installer's check
// decides it (here: /dev/kvm is there, but QEMU aborts setting up a vCPU under it).
func kvmUsable() bool {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), hostcheck.KVMProbeTimeout)
	defer cancel()
	return exec.CommandContext(ctx, "qemu-system-x86_64", hostcheck.KVMProbeArgs...).Run() == nil
}

// testInstall: the DaemonSet's pod becomes Ready, the node gets its veil.dev/ labels, the
// RuntimeClasses exist, containerd's configuration imports the drop-in declaring veil and
// veil-sim (containerd was restarted once, through the harness), the files are under
// /opt/veil, and containerd still runs runc pods.
func testInstall(t *testing.T) {
	n := requireInstalled(t)
	pod := installerPod(t)
	ready := kubectl(t, "", "-n", "veil-system", "get", "pod", pod, "-o",
		`jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.containerStatuses[0].restartCount}`)
	if ready != "True 0" {
		t.Errorf("installer pod %s: Ready and restarts %q, want True 0", pod, ready)
	}
	kvm := kvmUsable()
	want := map[string]string{"veil.dev/runtime": "true", "veil.dev/kvm": map[bool]string{true: "true", false: "false"}[kvm],
		"veil.dev/tee.none": "true", "veil.dev/tee.sim": "true", "veil.dev/tee.snp": "false", "veil.dev/tee.tdx": "false"}
	labels := nodeLabels(t)
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("node label %s=%q, want %q (labels %v)", k, labels[k], v, labels)
		}
	}
	t.Logf("node labels (KVM usable here: %v): %v", kvm, labels)

	rcs := kubectl(t, "", "get", "runtimeclass", "veil", "veil-sim", "veil-snp", "veil-tdx", "-o",
		`go-template={{range .items}}{{.metadata.name}} {{.handler}} {{.overhead.podFixed.memory}} {{range $k, $v := .scheduling.nodeSelector}}{{$k}}={{$v}}{{end}}{{"\n"}}{{end}}`)
	for _, h := range []string{"veil tee.none", "veil-sim tee.sim", "veil-snp tee.snp", "veil-tdx tee.tdx"} {
		name, label, _ := strings.Cut(h, " ")
		if !strings.Contains(rcs+"\n", name+" "+name+" 720Mi veil.dev/"+label+"=true\n") {
			t.Errorf("RuntimeClass %s: want handler %s, overhead 720Mi, nodeSelector veil.dev/%s=true; got\n%s", name, name, label, rcs)
		}
	}

	cfgPath := cluster.ContainerdConfigPath()
	cfg, _ := os.ReadFile(cfgPath)
	dropIn := filepath.Join(filepath.Dir(cfgPath), "conf.d", "veil.toml")
	drop, err := os.ReadFile(dropIn)
	if err != nil || !strings.Contains(string(cfg), dropIn) {
		t.Fatalf("containerd's config %s does not import %s (%v):\n%s", cfgPath, dropIn, err, cfg)
	}
	for _, s := range []string{"runtimes.veil]", "runtimes.veil-sim]", "runtime_path = '" + installDir + "/bin/containerd-shim-veil-v2'",
		"ConfigPath = '" + installDir + "/share/defaults/veil/configuration-veil-sim.toml'"} {
		if !strings.Contains(string(drop), s) {
			t.Errorf("the drop-in lacks %q:\n%s", s, drop)
		}
	}
	if backup, _ := os.ReadFile(cfgPath + ".veil-backup"); !bytes.Equal(backup, n.configBefore) {
		t.Errorf("%s.veil-backup is not containerd's config as it was", cfgPath)
	}
	if r := cluster.ContainerdRestarts() - n.restarts; r != 1 {
		t.Errorf("containerd restarted %d times by the install, want 1", r)
	}
	manifest, _ := os.ReadFile(filepath.Join(n.image, "manifest.json"))
	installed, err := os.ReadFile(filepath.Join(installDir, "share/veil/image/manifest.json"))
	if err != nil || !bytes.Equal(installed, manifest) {
		t.Errorf("%s/share/veil/image is not the payload's guest image (%v)", installDir, err)
	}
	for _, f := range []string{"bin/containerd-shim-veil-v2", "share/defaults/veil/configuration-veil.toml",
		"share/defaults/veil/configuration-veil-sim.toml", ".veil-deploy/state.json"} {
		if _, err := os.Stat(filepath.Join(installDir, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	logs := kubectl(t, "", "-n", "veil-system", "logs", pod)
	for _, s := range []string{"check kvm", "containerd: " + dropIn + " declares veil, veil-sim", "containerd answers on"} {
		if !strings.Contains(logs, s) {
			t.Errorf("the installer's log lacks %q:\n%s", s, logs)
		}
	}
	t.Logf("installer's log:\n%s", logs)
	runcStillRuns(t, "runc-after-install")
}

// testUninstall: with VEIL_UNINSTALL_ON_EXIT=true, deleting the DaemonSet uninstalls:
// containerd's configuration is byte for byte what it was, /opt/veil is gone, so are the
// labels, and containerd (restarted once more) still runs runc pods.
func testUninstall(t *testing.T) {
	n := requireInstalled(t)
	start := time.Now()
	kubectl(t, "", "-n", "veil-system", "set", "env", "ds/veil-installer", "VEIL_UNINSTALL_ON_EXIT=true")
	kubectl(t, "", "-n", "veil-system", "rollout", "status", "ds/veil-installer", "--timeout=3m")
	restarts := cluster.ContainerdRestarts()
	pod := installerPod(t)
	t.Logf("rollout with VEIL_UNINSTALL_ON_EXIT=true: %.1f s (containerd restarts so far %d)", time.Since(start).Seconds(), restarts)
	// The pod's log while it stops: kubectl logs -f ends with the container.
	logs := make(chan string, 1)
	go func() {
		out, _ := cluster.Kubectl(3*time.Minute, "", "-n", "veil-system", "logs", "-f", pod)
		logs <- out
	}()
	time.Sleep(500 * time.Millisecond)
	deleted := time.Now()
	kubectl(t, "", "-n", "veil-system", "delete", "ds/veil-installer", "--wait")
	kubectl(t, "", "-n", "veil-system", "wait", "--for=delete", "pod/"+pod, "--timeout=2m")
	t.Logf("installer pod gone %.1f s after kubectl delete ds", time.Since(deleted).Seconds())
	select {
	case out := <-logs:
		if !strings.Contains(out, "stopping: uninstalling") {
			t.Errorf("the installer's log does not show the uninstall:\n%s", out)
		}
		t.Logf("the installer's log as it stopped:\n%s", lastLines(out, 12))
	case <-time.After(30 * time.Second):
		t.Error("kubectl logs -f of the installer did not end with its pod")
	}
	veil.mu.Lock()
	veil.installed = false
	veil.mu.Unlock()

	cfg, _ := os.ReadFile(cluster.ContainerdConfigPath())
	if !bytes.Equal(cfg, n.configBefore) {
		t.Errorf("containerd's config is not what it was before the install:\n%s\nwas:\n%s", cfg, n.configBefore)
	}
	dir := filepath.Dir(cluster.ContainerdConfigPath())
	for _, p := range []string{filepath.Join(dir, "conf.d", "veil.toml"), cluster.ContainerdConfigPath() + ".veil-backup", installDir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after the uninstall (err %v)", p, err)
		}
	}
	if l := nodeLabels(t); len(l) != 0 {
		t.Errorf("veil.dev/ labels left on the node: %v", l)
	}
	if r := cluster.ContainerdRestarts(); r != restarts+1 {
		t.Errorf("containerd restarted %d times by the uninstall, want 1", r-restarts)
	}
	runcStillRuns(t, "runc-after-uninstall")
	begin := time.Now()
	kubectl(t, "", "delete", "-k", n.kustomize, "--ignore-not-found", "--wait", "--timeout=2m")
	t.Logf("kubectl delete -k (RuntimeClasses, RBAC, namespace veil-system with the KBS): %.1f s", time.Since(begin).Seconds())
	if out, _ := cluster.Kubectl(time.Minute, "", "get", "runtimeclass", "-o", "name"); strings.Contains(out, "veil") {
		t.Errorf("RuntimeClasses left: %s", out)
	}
	t.Logf("uninstall: %.1f s in all", time.Since(start).Seconds())
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventsFor lists the events of the object name in namespace ns, "reason: message" each.
func eventsFor(t testing.TB, ns, name string) []string {
	t.Helper()
	out, err := cluster.Kubectl(time.Minute, "", "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+name,
		"-o", `go-template={{range .items}}{{.reason}}: {{.message}}{{"\n"}}{{end}}`)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(out), "\n")
}

// waitEvent waits until an event of the object name in ns has all of wants in its
// "reason: message", and returns it; it fails with every event after timeout.
func waitEvent(t testing.TB, ns, name string, timeout time.Duration, wants ...string) string {
	t.Helper()
	var events []string
	var found string
	if waitFor(timeout, func() bool {
		events = eventsFor(t, ns, name)
		for _, e := range events {
			ok := true
			for _, w := range wants {
				ok = ok && strings.Contains(e, w)
			}
			if ok {
				found = e
				return true
			}
		}
		return false
	}) {
		return found
	}
	t.Fatalf("%s/%s: no event with %q after %s; events:\n%s", ns, name, wants, timeout, strings.Join(events, "\n"))
	return ""
}
