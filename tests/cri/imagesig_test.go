//go:build e2e

package cri

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/veil-runtime/veil/agent/imagesig/imagesigtest"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/shim/pod"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

// signedPodYAML is the pod of TestImageSignature: signed runs from an image signed by the
// test's cosign key, unsigned from one nobody signed.
const signedPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: signed
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: signed
    image: %s
    command: ["sh", "-c", "echo signed-ok; exec sleep 3600"]
  - name: unsigned
    image: %s
    command: ["sh", "-c", "echo signed-ok; exec sleep 3600"]
`

// TestImageSignature runs a guest-pull pod whose initdata carries an image security policy
// (image-policy.json) that requires the cosign key the test made for veil-test/: the image
// signed by the cosign CLI runs, and the unsigned one is refused by the guest, with the
// image and the rule in the CRI error the user sees.
func TestImageSignature(t *testing.T) {
	networkPrereqs(t)
	ensureBridge(t)
	reg := startGatewayRegistry(t)
	gw := fmt.Sprintf("%s:%d", gatewayIP, reg.port)
	writeGuestPullConfigs(t, gw, reg.port)

	layer, err := busyboximage.Static("var")
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"signed", "unsigned"} {
		cfg := busyboximage.Shell()
		cfg.Env = append(cfg.Env, "VARIANT="+repo)
		if err := push(env.registryHost+"/veil-test/"+repo+":v1", layer, cfg); err != nil {
			t.Fatal(err)
		}
	}
	signed, unsigned := gw+"/veil-test/signed:v1", gw+"/veil-test/unsigned:v1"
	// cosign signs through the gateway name, the one the guest pulls by, so the signature's
	// docker-reference is the guest's repository.
	key := imagesigtest.GenerateKeyPair(t)
	ref, err := name.NewTag(signed, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	imagesigtest.Sign(t, key, gw+"/veil-test/signed@"+desc.Digest.String())
	for _, r := range []string{signed, unsigned} {
		crictl(t, "pull", r)
	}

	imagePolicy := `{
  "default": [{"type": "reject"}],
  "transports": {"docker": {"` + gw + `/veil-test": [{"type": "sigstoreSigned", "keyData": "` + key.KeyData() + `",
    "signedIdentity": {"type": "matchRepository"}}]}}
}`
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = env.pause
	yaml := fmt.Sprintf(signedPodYAML, env.registryHost+"/veil-test/signed:v1", env.registryHost+"/veil-test/unsigned:v1")
	res, err := genpolicy.Generate(context.Background(), []byte(yaml), genpolicy.Options{
		Resolver:  &genpolicy.RegistryResolver{PlainHTTPLoopback: true},
		Settings:  settings,
		GuestPull: true,
		ExtraData: map[string]string{
			initdata.KeyAgent:       fmt.Sprintf("[image]\ninsecure_registries = [%q]\n", gw),
			initdata.KeyImagePolicy: imagePolicy,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := res.Workloads[0]

	podCfg := podConfig(t, "signed", map[string]string{initdata.Annotation: w.Annotation})
	podID := crictl(t, "runp", "--runtime", pullHandler, podCfg)
	vm := pod.VMID(criNamespace, podID)
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})
	cmd := []string{"sh", "-c", "echo signed-ok; exec sleep 3600"}
	cid := crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "signed", 0, signed, nil, cmd), signed), podCfg)
	crictl(t, "start", cid)
	waitLog(t, cid, "signed-ok")
	t.Logf("the signed image runs")

	bad := crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "unsigned", 0, unsigned, nil, cmd), unsigned), podCfg)
	stdout, errOut, err := env.crictl(2*time.Minute, "start", bad)
	if err == nil {
		t.Fatalf("an unsigned image started under a signed-only policy (stdout %q)", stdout)
	}
	for _, want := range []string{unsigned, `refused by image policy rule transports.docker["` + gw + `/veil-test"][0] (sigstoreSigned)`, "no cosign signature"} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("unsigned image: the CRI error does not say %q:\n%s", want, errOut)
		}
	}
	t.Logf("unsigned image refused: %s", lineWith(errOut, "refused by image policy"))
	if st := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", cid); st != "CONTAINER_RUNNING" {
		t.Fatalf("after the refusal: state %q", st)
	}
	crictl(t, "rm", "-f", bad)
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	checkGone(t, podID, vm)
}
