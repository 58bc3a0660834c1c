//go:build e2e

package k8s

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/kbswire/admin"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/sim/psp"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// confidentialPodYAML is the confidential pod as its owner writes it: the encrypted image, a
// variable, and an exec readiness probe (the one exec its policy allows).
const confidentialPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: confidential
spec:
  runtimeClassName: veil-sim
  terminationGracePeriodSeconds: 2
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: app
    image: %s/veil-test/encrypted:v1
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo confidential-ok; cat /secret/message; ` + idle + `"]
    env:
    - name: GREETING
      value: hello
    readinessProbe:
      exec:
        command: ["cat", "/secret/message"]
      periodSeconds: 5
`

// testConfidentialPod: the KBS runs in the cluster (deploy/kbs/overlays/sim-http) and holds
// the KEK; a veil-sim pod whose initdata (veil-genpolicy) names that KBS runs from the
// encrypted image, which its guest pulled and decrypted after attesting; an exec its YAML
// did not declare is refused with the policy's message, the declared one (its probe) runs;
// the same initdata on a pod with another value of a variable, or another image, is refused
// at CreateContainer, and their events say why.
func testConfidentialPod(t *testing.T) {
	n := requireInstalled(t)
	reg := sharedRegistry(t)
	kbsURL := deployKBS(t, n, reg)
	start := time.Now()
	podYAML, annotation := genpolicyYAML(t, reg, fmt.Sprintf(confidentialPodYAML, reg.gw), kbsURL)
	t.Logf("veil-genpolicy: initdata annotation of %d bytes in %s", len(annotation), time.Since(start).Round(time.Millisecond))

	p, took := applyRunning(t, "confidential", podYAML, 5*time.Minute)
	sandboxes := []string{sandboxOf(t, p.Metadata.UID)}
	var logs string
	if !waitFor(time.Minute, func() bool {
		logs, _ = cluster.Kubectl(time.Minute, "", "logs", "confidential")
		return strings.Contains(logs, secretMessage)
	}) {
		t.Fatalf("kubectl logs confidential: %q, want %q", logs, secretMessage)
	}
	t.Logf("confidential pod Running in %s; its log: %q", took.Round(time.Millisecond), strings.TrimSpace(logs))
	if !waitFor(time.Minute, func() bool {
		out, _ := cluster.Kubectl(time.Minute, "", "get", "pod", "confidential", "-o",
			`jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return out == "True"
	}) {
		t.Errorf("the confidential pod is not Ready: its exec probe (declared) was not allowed?\n%s",
			strings.Join(eventsFor(t, "default", "confidential"), "\n"))
	}
	if out := kubectl(t, "", "exec", "confidential", "--", "cat", "/secret/message"); out != secretMessage {
		t.Errorf("the declared exec: %q", out)
	}
	_, err := cluster.Kubectl(time.Minute, "", "exec", "confidential", "--", "sh", "-c", "cat /secret/message")
	if err == nil || !strings.Contains(err.Error(), "ExecProcessRequest denied by policy") {
		t.Fatalf("kubectl exec of a command the YAML did not declare: %v, want the policy's refusal", err)
	}
	t.Logf("undeclared exec refused: %s", lastLines(err.Error(), 1))
	if m := kbsAttestations(t, kbsURL); m < 1 {
		t.Errorf("the KBS counted %v successful attestations, want at least 1", m)
	}

	// The same initdata, on pods that differ from the YAML it was made for.
	bad := map[string]string{
		"confidential-env": editPod(t, podYAML, func(pod map[string]any) {
			pod["metadata"].(map[string]any)["name"] = "confidential-env"
			firstContainer(pod)["env"] = []any{map[string]any{"name": "GREETING", "value": "goodbye"}}
		}),
		"confidential-image": editPod(t, podYAML, func(pod map[string]any) {
			pod["metadata"].(map[string]any)["name"] = "confidential-image"
			firstContainer(pod)["image"] = reg.gw + "/veil-test/busybox:v1"
		}),
	}
	wants := map[string]string{"confidential-env": "environment variable GREETING is not allowed with this value",
		"confidential-image": "is not the policy's"}
	begin := time.Now()
	for name, y := range bad {
		kubectl(t, y, "apply", "-f", "-")
		t.Cleanup(func() {
			_, _ = cluster.Kubectl(time.Minute, "", "delete", "pod", name, "--ignore-not-found", "--wait=false")
		})
	}
	for name, want := range wants {
		ev := waitEvent(t, "default", name, 4*time.Minute, "CreateContainerRequest denied by policy", want)
		t.Logf("%s refused after %s: %s", name, time.Since(begin).Round(time.Millisecond), ev)
		bp, _ := getPod(t, name)
		for _, cs := range bp.Status.ContainerStatuses {
			if _, running := cs.State["running"]; running {
				t.Errorf("%s: container %s runs", name, cs.Name)
			}
		}
		sandboxes = append(sandboxes, sandboxOf(t, bp.Metadata.UID))
	}
	if p, _ := getPod(t, "confidential"); p.Status.Phase != "Running" {
		t.Errorf("the confidential pod is %s after the refusals", p.Status.Phase)
	}

	begin = time.Now()
	kubectl(t, "", "delete", "pod", "confidential", "confidential-env", "confidential-image", "--wait", "--timeout=2m")
	left := waitGone(func() (l []string) {
		for _, sb := range sandboxes {
			l = append(l, qemuOf(sb)...)
		}
		for _, pid := range veilShims() {
			l = append(l, fmt.Sprint("shim ", pid))
		}
		return l
	})
	if len(left) > 0 {
		t.Errorf("left after deleting the three pods: %v", left)
	}
	t.Logf("three veil-sim pods deleted, their VMs and shims gone, in %s", time.Since(begin).Round(time.Millisecond))
}

// deployKBS deploys the KBS as docs/images.md says (its Secret and ConfigMaps, then
// deploy/kbs/overlays/sim-http), waits for it, and stores the registry's KEK in it through its
// administrator API with veil-kbs-client and the test's own administrator key. It returns the
// KBS's URL at its pod's IP (no kube-proxy here: ClusterIPs do not route).
func deployKBS(t *testing.T, n *node, reg *testRegistry) string {
	t.Helper()
	start := time.Now()
	dir := filepath.Join(n.dir, "kbs")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	priv, pub := filepath.Join(dir, "admin-private-key.pem"), filepath.Join(dir, "admin-public-key.pem")
	if _, err := admin.GenerateKeyPair(priv, pub); err != nil {
		t.Fatal(err)
	}
	m := simMeasurement(t, n.image)
	refs, _ := json.Marshal(appraisal.ReferenceValues{SNP: &appraisal.SNPReference{AllowSimulated: true,
		Measurements: []string{hex.EncodeToString(m[:])}}})
	refsFile := filepath.Join(dir, "reference-values.json")
	if err := os.WriteFile(refsFile, refs, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"secret", "generic", "veil-kbs-sim-roots", "--from-file=" + filepath.Join(n.simDir, sim.SNPRootsFile),
			"--from-file=" + filepath.Join(n.simDir, sim.TDXRootFile)},
		{"configmap", "veil-kbs-admin", "--from-file=" + pub},
		{"configmap", "veil-kbs-reference-values", "--from-file=reference-values.json=" + refsFile},
	} {
		obj := kubectl(t, "", append(append([]string{"-n", "veil-system", "create"}, args...), "--dry-run=client", "-o", "yaml")...)
		kubectl(t, obj, "apply", "-f", "-")
	}
	kubectl(t, "", "apply", "-k", filepath.Join(n.repo, "deploy", "kbs", "overlays", "sim-http"))
	if _, err := cluster.Kubectl(3*time.Minute, "", "-n", "veil-system", "rollout", "status", "deployment/veil-kbs", "--timeout=2m"); err != nil {
		desc, _ := cluster.Kubectl(time.Minute, "", "-n", "veil-system", "describe", "pod", "-l", "app.kubernetes.io/name=veil-kbs")
		t.Fatalf("%v\n%s", err, desc)
	}
	ip := kubectl(t, "", "-n", "veil-system", "get", "pod", "-l", "app.kubernetes.io/name=veil-kbs", "-o",
		"jsonpath={.items[0].status.podIP}")
	url := "http://" + ip + ":8080"
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("the KBS at its pod IP: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/healthz: %d %s", url, resp.StatusCode, body)
	}
	kekFile := filepath.Join(dir, "kek.bin")
	if err := os.WriteFile(kekFile, reg.kek, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run("", nil, filepath.Join(binDir(), "veil-kbs-client"), "--url", url, "--admin-key", priv,
		"set-resource", "kbs:///default/key/1", kekFile); err != nil {
		t.Fatal(err)
	}
	logs, _ := cluster.Kubectl(time.Minute, "", "-n", "veil-system", "logs", "deploy/veil-kbs")
	t.Logf("KBS at %s Ready, KEK stored, in %.1f s; its log:\n%s", url, time.Since(start).Seconds(), lastLines(logs, 8))
	return url
}

// simMeasurement is the launch measurement the shim's sim PSP reports for a VM of image under
// the veil-sim handler (whose configuration has no kernel_params): the image's command line
// plus veil.tee=sim.
func simMeasurement(t testing.TB, image string) [48]byte {
	t.Helper()
	img, err := sandbox.LoadImage(image)
	if err != nil {
		t.Fatal(err)
	}
	cmdline := strings.Join(append(append([]string{}, img.Cmdline...), psp.KernelParam+"="+psp.KernelParamSim), " ")
	m, err := psp.LaunchMeasurement(img.Manifest.Kernel.SHA384, img.Manifest.Initrd.SHA384, cmdline)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// kbsAttestations is the KBS's count of successful attestations (/metrics), every TEE.
func kbsAttestations(t testing.TB, url string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	re := regexp.MustCompile(`(?m)^veil_kbs_attestations_total\{[^}]*result="success"[^}]*\} ([0-9.e+]+)$`)
	for _, m := range re.FindAllSubmatch(body, -1) {
		var v float64
		_, _ = fmt.Sscan(string(m[1]), &v)
		sum += v
	}
	return sum
}

// applyRunning applies the YAML of the pod name and waits until it is Running (failing on an
// error state or after timeout); the pod is deleted when the test ends.
func applyRunning(t testing.TB, name, podYAML string, timeout time.Duration) (podStatus, time.Duration) {
	t.Helper()
	start := time.Now()
	kubectl(t, podYAML, "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(2*time.Minute, "", "delete", "pod", name, "--ignore-not-found", "--wait", "--timeout=90s")
	})
	var p podStatus
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		p, _ = getPod(t, name)
		if p.Status.Phase == "Running" {
			return p, time.Since(start)
		}
		failed := p.Status.Phase == "Failed" || p.Status.Phase == "Succeeded"
		for _, cs := range p.Status.ContainerStatuses {
			if w, ok := cs.State["waiting"]; ok && (strings.Contains(w.Reason, "Err") || strings.Contains(w.Reason, "BackOff")) {
				failed = true
			}
		}
		if failed || time.Now().After(deadline) {
			desc, _ := cluster.Kubectl(time.Minute, "", "describe", "pod", name)
			t.Fatalf("pod %s not Running after %s (phase %q):\n%s", name, time.Since(start).Round(time.Millisecond), p.Status.Phase, desc)
		}
	}
}
