//go:build e2e

package k8s

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/tests/internal/k8scluster"
)

// testSNPPending: a pod of the veil-snp RuntimeClass on a node without SEV-SNP stays Pending,
// and its FailedScheduling event gives the scheduler's reason: the RuntimeClass's
// nodeSelector (veil.dev/tee.snp=true) matches no node.
func testSNPPending(t *testing.T) {
	requireInstalled(t)
	start := time.Now()
	kubectl(t, podYAML("snp-pod", "veil-snp", "echo never"), "apply", "-f", "-")
	defer kubectl(t, "", "delete", "pod", "snp-pod", "--wait", "--timeout=1m")
	ev := waitEvent(t, "default", "snp-pod", time.Minute, "FailedScheduling", "didn't match Pod's node affinity/selector")
	t.Logf("FailedScheduling after %s: %s", time.Since(start).Round(time.Millisecond), ev)
	if out := kubectl(t, "", "get", "pod", "snp-pod", "-o", "jsonpath={.status.phase} node={.spec.nodeName}"); out != "Pending node=" {
		t.Errorf("snp-pod: %q, want Pending and no node", out)
	}
}

// veilProcs lists the Veil shims of the cluster's containerd and every QEMU of a Veil VM.
func veilProcs() []string {
	var out []string
	for _, pid := range veilShims() {
		out = append(out, fmt.Sprint("shim ", pid))
	}
	for _, pid := range procsWhere("qemu-system-x86_64", "veil-") {
		out = append(out, fmt.Sprint("qemu ", pid))
	}
	return out
}

// testBadInput: a RuntimeClass whose handler containerd does not know, and veil-sim pods with
// initdata that is not base64 or has an unknown key, each give their pod a clear event and
// leave nothing behind; the node keeps running pods; the installer's check, run in its pod,
// says what it found of KVM without failing the install.
func testBadInput(t *testing.T) {
	requireInstalled(t)
	beforeMounts, beforeNetns, beforeProcs := k8scluster.MountsUnder("/"), netnsList(), veilProcs()

	kubectl(t, `apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: veil-unknown
handler: veil-unknown
`, "apply", "-f", "-")
	defer kubectl(t, "", "delete", "runtimeclass", "veil-unknown", "--ignore-not-found")
	doc := "version = \"0.1.0\"\nalgorithm = \"sha256\"\nbogus = true\n[data]\n\"policy.rego\" = \"package agent_policy\"\n"
	unknownKey, err := initdata.EncodeAnnotation([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	pods := []struct {
		name, class, annotation string
		wants                   []string
	}{
		{"unknown-handler", "veil-unknown", "", []string{"FailedCreatePodSandBox", `no runtime for "veil-unknown" is configured`}},
		{"initdata-garbage", "veil-sim", "%%% not base64 %%%", []string{"FailedCreatePodSandBox", initdata.Annotation}},
		{"initdata-unknown-key", "veil-sim", unknownKey, []string{"FailedCreatePodSandBox", "bogus"}},
	}
	start := time.Now()
	for _, p := range pods {
		y := podYAML(p.name, p.class, "echo never")
		if p.annotation != "" {
			y = strings.Replace(y, "metadata:\n", fmt.Sprintf("metadata:\n  annotations:\n    %s: %q\n", initdata.Annotation, p.annotation), 1)
		}
		kubectl(t, y, "apply", "-f", "-")
	}
	for _, p := range pods {
		ev := waitEvent(t, "default", p.name, 2*time.Minute, p.wants...)
		t.Logf("%s: event after %s: %s", p.name, time.Since(start).Round(time.Millisecond), ev)
		if out := kubectl(t, "", "get", "pod", p.name, "-o", "jsonpath={.status.phase}"); out != "Pending" {
			t.Errorf("%s is %s", p.name, out)
		}
	}
	// The node still runs pods: a new one with runc, and the KBS's (when an earlier step
	// deployed it) is still Ready.
	runcStillRuns(t, "runc-after-bad-input")
	if ready := kubectl(t, "", "get", "node", k8scluster.NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); ready != "True" {
		t.Errorf("node Ready %q", ready)
	}
	if kbs := kubectl(t, "", "-n", "veil-system", "get", "pods", "-l", "app.kubernetes.io/name=veil-kbs", "-o",
		`jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}`); kbs != "" && kbs != "True" {
		t.Errorf("the KBS's pod: Ready %q", kbs)
	}

	var names []string
	for _, p := range pods {
		names = append(names, p.name)
	}
	kubectl(t, "", append(append([]string{"delete", "pod"}, names...), "--wait", "--timeout=1m")...)
	left := waitGone(func() []string {
		l := newEntries(beforeProcs, veilProcs())
		l = append(l, newMounts(beforeMounts)...)
		return append(l, newEntries(beforeNetns, netnsList())...)
	})
	if len(left) > 0 {
		t.Errorf("left after the refused pods: %v", left)
	}

	// veil-deploy check in the installer's pod: the report, exit status 0.
	out := kubectl(t, "", "-n", "veil-system", "exec", installerPod(t), "--", "/usr/local/bin/veil-deploy", "check")
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			lines[f[0]] = strings.Join(f[1:], " ")
		}
	}
	wantKVM := "no /dev/kvm present, but unusable"
	if kvmUsable() {
		wantKVM = "yes /dev/kvm present; QEMU ran"
	}
	for name, want := range map[string]string{"kvm": wantKVM, "veil": "yes", "veil-sim": "yes", "veil-snp": "no",
		"installed": "yes", "restart": "yes containerd is restarted by: command"} {
		if !strings.HasPrefix(lines[name], want) {
			t.Errorf("veil-deploy check: %s %q, want %q...", name, lines[name], want)
		}
	}
	t.Logf("veil-deploy check in the installer's pod:\n%s", out)
}
