//go:build e2e

package cri

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/internal/faultserver"
)

// faultsPodYAML is the pod of TestGuestPullFaults: one container of the encrypted image (its
// key from the KBS) and one of the plain image it was made from (no key).
const faultsPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: faults
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: app
    image: %s
    command: ["sh", "-c", "echo encrypted-ok; cat /secret/message; exec sleep 3600"]
  - name: plain
    image: %s
    command: ["sh", "-c", "echo plain-ok; cat /secret/message; exec sleep 3600"]
`

// TestGuestPullFaults (issue 12) stages, through a whole confidential pod (sim TEE, guest
// pull, veil-snapshotter), the two outside services dying while the guest needs them:
//   - the KBS dies on the guest's first request and stays down: the agent retries with
//     backoff, gives up, and the container fails to start with the KBS's address in the
//     error; once the KBS is back on the same address, the same container starts;
//   - the registry dies halfway through a layer's blob: the container fails to start with
//     the layer and the registry named; once it is back, the same container starts, so the
//     guest kept nothing of the broken pull.
//
// Through both, the pod stays ready and its VM keeps running.
func TestGuestPullFaults(t *testing.T) {
	reg, gw, kbs, _ := simPullPod(t, 0)
	// The KBS the guest reaches is a front that the test kills; behind it, the real KBS.
	target, err := url.Parse(kbs.URL())
	if err != nil {
		t.Fatal(err)
	}
	front := faultserver.StartOn(t, "0.0.0.0:0", httputil.NewSingleHostReverseProxy(target))
	kbsURL := fmt.Sprintf("http://%s:%d", gatewayIP, front.Port())

	plainRef := env.registryHost + "/veil-test/faults-plain:v1"
	pushSecretImage(t, plainRef, secretTar(t))
	encrypter(t, "--kek-dir", t.TempDir(), "--kbs", fmt.Sprintf("http://127.0.0.1:%d", kbs.Port()), "--admin-key", kbs.Env.WriteAdminKey(t)).
		Encrypt(t, "docker://"+plainRef, "docker://"+env.registryHost+"/veil-test/faults-encrypted:v1", "kbs:///default/key/1")
	app, plain := gw+"/veil-test/faults-encrypted:v1", gw+"/veil-test/faults-plain:v1"
	for _, ref := range []string{app, plain} {
		pullFor(t, pullHandler, ref)
	}
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n[kbs]\nurl = %q\n", gw, kbsURL)
	yaml := fmt.Sprintf(faultsPodYAML, env.registryHost+"/veil-test/faults-encrypted:v1", plainRef)
	podID, podCfg := runGenpolicyPod(t, "faults", yaml, veilTOML, true)
	commands := map[string][]string{ // as in faultsPodYAML, which the policy holds them to
		"app":   {"sh", "-c", "echo encrypted-ok; cat /secret/message; exec sleep 3600"},
		"plain": {"sh", "-c", "echo plain-ok; cat /secret/message; exec sleep 3600"},
	}
	start := func(name string, attempt int, ref string) (cid, errOut string, err error) {
		t.Helper()
		cid = crictl(t, "create", podID, userImage(t, policyContainerConfig(t, name, attempt, ref, nil, commands[name]), ref), podCfg)
		began := time.Now()
		_, errOut, err = env.crictl(3*time.Minute, "start", cid)
		t.Logf("start %s (attempt %d): %v after %v", name, attempt, err, time.Since(began).Round(time.Millisecond))
		return cid, errOut, err
	}
	podReady := func(after string) {
		t.Helper()
		if st := crictl(t, "inspectp", "-o", "go-template", "--template", "{{.status.state}}", podID); st != "SANDBOX_READY" {
			t.Fatalf("after %s: pod state %q", after, st)
		}
	}

	// The KBS dies on the guest's first request and stays down.
	died := front.DieOn(func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/kbs/v0/") }, 0)
	cid, errOut, err := start("app", 0, app)
	if err == nil {
		t.Fatal("a container whose key is on a dead KBS started")
	}
	select {
	case <-died:
	default:
		t.Fatalf("the guest never reached the KBS (requests %q); start failed with %q", front.Requests(), errOut)
	}
	// The first request killed the KBS; the later attempts found nothing listening.
	for _, want := range []string{"kbs:///default/key/1", "KBS " + kbsURL + " handshake: giving up after", "connection refused"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("KBS down: the error does not say %q: %q", want, errOut)
		}
	}
	t.Logf("KBS down: %s", lineWith(errOut, "giving up"))
	podReady("the KBS's death")
	crictl(t, "rm", "-f", cid)

	front.Restart(nil)
	cid, errOut, err = start("app", 1, app)
	if err != nil {
		t.Fatalf("with the KBS back: %v: %s", err, errOut)
	}
	waitLog(t, cid, "decrypted in the guest")

	// The registry dies halfway through the plain image's first layer.
	_, layers := imageBlobs(t, env.registryHost+"/veil-test/faults-plain:v1")
	layer := layers[0]
	died = reg.srv.DieOn(func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+layer)
	}, 64<<10)
	cid, errOut, err = start("plain", 0, plain)
	if err == nil {
		t.Fatal("a container started although the registry died in the middle of its layer")
	}
	select {
	case <-died:
	default:
		t.Fatalf("the registry never served the layer %s; start failed with %q", layer, errOut)
	}
	for _, want := range []string{layer, "registry " + gw} {
		if !strings.Contains(errOut, want) {
			t.Errorf("registry down: the error does not say %q: %q", want, errOut)
		}
	}
	t.Logf("registry down: %s", lineWith(errOut, layer))
	podReady("the registry's death")
	crictl(t, "rm", "-f", cid)

	reg.srv.Restart(nil)
	cid, errOut, err = start("plain", 1, plain)
	if err != nil {
		t.Fatalf("with the registry back: %v: %s", err, errOut)
	}
	waitLog(t, cid, "plain-ok")
	podReady("both came back")
}

// diskFullPodYAML is the pod of TestGuestPullDiskFull: an image larger than the pod's
// scratch disk, and a small one.
const diskFullPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: diskfull
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: big
    image: %s
    command: ["sh", "-c", "ls -l /big.bin; echo big-ok; exec sleep 3600"]
  - name: small
    image: %s
    command: ["sh", "-c", "echo small-ok; exec sleep 3600"]
`

// TestGuestPullDiskFull (issue 12): a confidential pod (sim TEE, guest pull) whose encrypted
// scratch disk, where the guest keeps its image cache, is 64 MiB, runs a container of an
// image with a 96 MiB layer. The start fails with the disk's ENOSPC and the layer named; the
// pod stays ready, and the guest kept nothing of the failed pull: a small image then pulls
// onto the same disk and its container starts.
func TestGuestPullDiskFull(t *testing.T) {
	_, gw, _, _ := simPullPod(t, 0)
	cfg, err := os.ReadFile(env.Path(pullConfigName))
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("[hypervisor]\n"), []byte("[hypervisor]\nscratch_disk_mib = 64\n"), 1)
	if err := os.WriteFile(env.Path(pullConfigName), cfg, 0o644); err != nil {
		t.Fatal(err)
	}

	bigRef, smallRef := env.registryHost+"/veil-test/diskfull-big:v1", env.registryHost+"/veil-test/diskfull-small:v1"
	pushBigImage(t, bigRef, 96<<20)
	pushSecretImage(t, smallRef, secretTar(t))
	_, layers := imageBlobs(t, bigRef)
	bigLayer := layers[len(layers)-1]
	guestBig, guestSmall := gw+"/veil-test/diskfull-big:v1", gw+"/veil-test/diskfull-small:v1"
	for _, ref := range []string{guestBig, guestSmall} {
		pullFor(t, pullHandler, ref)
	}
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n", gw)
	podID, podCfg := runGenpolicyPod(t, "diskfull", fmt.Sprintf(diskFullPodYAML, bigRef, smallRef), veilTOML, true)

	cmd := []string{"sh", "-c", "ls -l /big.bin; echo big-ok; exec sleep 3600"}
	cid := crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "big", 0, guestBig, nil, cmd), guestBig), podCfg)
	began := time.Now()
	_, errOut, err := env.crictl(3*time.Minute, "start", cid)
	t.Logf("start big: %v after %v", err, time.Since(began).Round(time.Millisecond))
	if err == nil {
		t.Fatal("a container whose 96 MiB layer cannot fit on a 64 MiB scratch disk started")
	}
	for _, want := range []string{bigLayer, "no space left on device"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("disk full: the error does not say %q: %q", want, errOut)
		}
	}
	t.Logf("disk full: %s", lineWith(errOut, bigLayer))
	if st := crictl(t, "inspectp", "-o", "go-template", "--template", "{{.status.state}}", podID); st != "SANDBOX_READY" {
		t.Fatalf("after the full disk: pod state %q", st)
	}
	crictl(t, "rm", "-f", cid)

	cmd = []string{"sh", "-c", "echo small-ok; exec sleep 3600"}
	cid = crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "small", 0, guestSmall, nil, cmd), guestSmall), podCfg)
	if _, errOut, err = env.crictl(3*time.Minute, "start", cid); err != nil {
		t.Fatalf("a small image after the full disk: %v: %s", err, errOut)
	}
	waitLog(t, cid, "small-ok")
}
