//go:build e2e

package cri

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

// bigImageMiB is the size of TestGuestPullOutlivesTimeout's image: larger than what the
// guest pulls within the CRI request's deadline.
const bigImageMiB = 200

const bigPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: big
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: big
    image: %s
    command: ["sh", "-c", "ls -l /big.bin; echo big-ok; exec sleep 3600"]
`

// TestGuestPullOutlivesTimeout: a 200 MB image pulled in the guest takes longer than the CRI
// request that asks for it (here 3 s; the kubelet's runtime request timeout is 2 minutes,
// which a larger image or a slower network exceeds the same way). That StartContainer fails,
// the guest goes on pulling, and the container created and started again (as the kubelet
// retries) finds the image in the guest's cache and runs.
func TestGuestPullOutlivesTimeout(t *testing.T) {
	networkPrereqs(t)
	ensureBridge(t)
	reg := startGatewayRegistry(t)
	gw := fmt.Sprintf("%s:%d", gatewayIP, reg.port)
	writeGuestPullConfigs(t, gw, reg.port)

	pushBigImage(t, env.registryHost+"/veil-test/big:v1", int64(bigImageMiB)<<20)
	ref := gw + "/veil-test/big:v1"
	pullFor(t, pullHandler, ref)

	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = env.pause
	res, err := genpolicy.Generate(context.Background(), []byte(fmt.Sprintf(bigPodYAML, env.registryHost+"/veil-test/big:v1")),
		genpolicy.Options{
			Resolver: &genpolicy.RegistryResolver{PlainHTTPLoopback: true}, Settings: settings, GuestPull: true, VeilSnapshotter: true,
			ExtraData: map[string]string{initdata.KeyAgent: fmt.Sprintf("[image]\ninsecure_registries = [%q]\n", gw)},
		})
	if err != nil {
		t.Fatal(err)
	}
	podCfg := podConfig(t, "big", map[string]string{initdata.Annotation: res.Workloads[0].Annotation})
	podID := crictl(t, "runp", "--runtime", pullHandler, podCfg)
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})
	cmd := []string{"sh", "-c", "ls -l /big.bin; echo big-ok; exec sleep 3600"}

	// containerd's CRI starts the task (and so the shim, and the guest's pull) at
	// StartContainer; when that fails, the kubelet removes the container and creates it again
	// with the next attempt number, then starts it.
	start := time.Now()
	var cid string
	for attempt := 0; time.Since(start) < 10*time.Minute; attempt++ {
		timeout := 2 * time.Minute
		if attempt == 0 {
			timeout = 3 * time.Second
		}
		cfg := userImage(t, policyContainerConfig(t, "big", attempt, ref, nil, cmd), ref)
		id := crictl(t, "create", podID, cfg, podCfg)
		_, errOut, err := env.crictl(timeout, "start", id)
		if err == nil {
			if attempt == 0 {
				t.Fatalf("the first StartContainer of a %d MiB image returned within 3 s; make the image larger", bigImageMiB)
			}
			cid = id
			t.Logf("StartContainer attempt %d succeeded, %v after the first began", attempt, time.Since(start).Round(time.Second))
			break
		}
		t.Logf("StartContainer attempt %d (timeout %v) failed after %v: %s", attempt, timeout,
			time.Since(start).Round(time.Second), lastLine(errOut))
		_, _, _ = env.crictl(time.Minute, "rm", "-f", id)
		time.Sleep(2 * time.Second)
	}
	if cid == "" {
		t.Fatal("the container never started")
	}
	out := waitLog(t, cid, "big-ok")
	if !strings.Contains(out, fmt.Sprint(int64(bigImageMiB)<<20)) {
		t.Fatalf("the container does not see the %d MiB file:\n%s", bigImageMiB, out)
	}
}

// pushBigImage pushes to ref an image of busybox and a layer holding /big.bin, size bytes of
// random data (which no compression shrinks).
func pushBigImage(t testing.TB, ref string, size int64) {
	t.Helper()
	big, err := busyboximage.RandomFileLayer("big.bin", size)
	if err != nil {
		t.Fatal(err)
	}
	base, err := busyboximage.Static()
	if err != nil {
		t.Fatal(err)
	}
	img, err := busyboximage.Image(busyboximage.Shell(), base, big)
	if err != nil {
		t.Fatal(err)
	}
	if err := busyboximage.Push(ref, img); err != nil {
		t.Fatal(err)
	}
}

// lastLine is the last line of crictl's stderr s that is not its note about a missing
// configuration file.
func lastLine(s string) string {
	last := ""
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.Contains(l, "crictl.yaml") {
			last = l
		}
	}
	return last
}
