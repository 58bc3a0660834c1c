//go:build e2e

package cri

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/veil-runtime/veil/agent/imagesig/imagesigtest"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/shim/pod"
)

// confidentialPodYAML is TestConfidentialPod's pod: its image is encrypted and signed, its
// DB_PASSWORD a sealed secret.
const confidentialPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: confidential
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: app
    image: %s
    command: ["sh", "-c", "echo \"app: $(cat /secret/message | tr -d '\\n'); DB_PASSWORD=$DB_PASSWORD\"; echo confidential-done; exec sleep 3600"]
    env:
    - {name: DB_PASSWORD, value: "%s"}
`

// confidentialSecret is the plaintext of the pod's sealed secret.
const confidentialSecret = "db-password-only-the-tee-sees-7f3a"

// TestConfidentialPod is the confidential flow end to end, as a user runs it (and as
// `make demo` narrates it): skopeo encrypts an image through veil-keyprovider, which creates
// its key in the KBS; the cosign CLI signs it; veil-kbs-client seals a secret held by the
// KBS; veil-genpolicy writes the pod's policy with guest pull, the image security policy and
// the sealed variable into its initdata. containerd pulls the image for the veil-pull handler,
// whose veil-snapshotter leaves every layer to the guest; the sim-TEE guest attests to the
// KBS, verifies the signature, decrypts the layers and unseals the secret. The registry's log
// shows the host fetched no layer, and the host's side of the pod holds no plaintext.
func TestConfidentialPod(t *testing.T) {
	reg, gw, kbs, _ := simPullPod(t, 0)
	c := prepareConfidential(t, gw, kbs, "confidential")
	ref := c.ref

	// 5. The kubelet's side: pull for the handler, run the pod.
	pullFor(t, pullHandler, ref)
	podCfg := podConfig(t, "confidential", map[string]string{initdata.Annotation: c.annotation})
	podID := crictl(t, "runp", "--runtime", pullHandler, podCfg)
	vm := pod.VMID(criNamespace, podID)
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})
	cid := crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "app", 0, ref, c.envs(), confidentialCmd), ref), podCfg)
	crictl(t, "start", cid)
	out := waitLog(t, cid, "confidential-done")
	want := "app: the layer was decrypted in the guest; DB_PASSWORD=" + confidentialSecret
	if !strings.Contains(out, want) {
		t.Fatalf("the container's output lacks %q:\n%s", want, out)
	}
	t.Logf("the container says: %s", lineWith(out, "app: "))
	if n := kbs.Count("/kbs/v0/attest"); n != 1 {
		t.Errorf("%d attestations to the KBS, want 1 (for the image's key, its signature's policy and the secret)", n)
	}

	// 6. What the host saw.
	checkGuestOnlyLayers(t, &reg.log, "veil-test/confidential", env.registryHost+"/veil-test/confidential:v1", true)
	var host, guest int
	for _, r := range reg.log.matching("/v2/veil-test/confidential/") {
		if r.fromHost() {
			host++
		} else {
			guest++
		}
	}
	t.Logf("registry log for veil-test/confidential: %d requests from the host (manifest, config), %d from the guest (signature, manifest, config, layers)", host, guest)
	checkNoPlaintext(t, pod.DirOf(vm), confidentialSecret, "the layer was decrypted in the guest")
	t.Logf("the host's side of the pod (%s) holds neither the secret nor the layer's content", pod.DirOf(vm))
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	checkGone(t, podID, vm)
}

// confidentialCmd is the command of confidentialPodYAML's container.
var confidentialCmd = []string{"sh", "-c", "echo \"app: $(cat /secret/message | tr -d '\\n'); DB_PASSWORD=$DB_PASSWORD\"; echo confidential-done; exec sleep 3600"}

// confidentialSetup is what prepareConfidential made: the KBS, the encrypted and signed
// image's reference on the gateway registry (and its plain original's), the sealed value of DB_PASSWORD and the pod's
// initdata annotation.
type confidentialSetup struct {
	kbs                            *kbstest.KBS
	ref, plain, sealed, annotation string // plain: the image before encryption, on gw
}

// envs is the container's environment: DB_PASSWORD sealed.
func (c confidentialSetup) envs() []map[string]string {
	return []map[string]string{{"key": "DB_PASSWORD", "value": c.sealed}}
}

// prepareConfidential does the owners' part of the confidential flow for the image
// veil-test/REPO:v1 on the gateway registry gw (steps 1-4 of TestConfidentialPod), with kbs
// (simPullPod's): the image encrypted by skopeo through veil-keyprovider and
// signed by cosign, DB_PASSWORD sealed by veil-kbs-client, and veil-genpolicy's initdata for
// confidentialPodYAML.
func prepareConfidential(t testing.TB, gw string, kbs *kbstest.KBS, repo string) confidentialSetup {
	t.Helper()
	kbsHost := fmt.Sprintf("http://127.0.0.1:%d", kbs.Port())
	adminKey := kbs.Env.WriteAdminKey(t)
	t.Logf("veil-kbs on %s: trusts the sim TEE's root, expects the guest image's launch measurement", kbsHost)

	// 1. The image owner encrypts the image: skopeo through veil-keyprovider, which makes the
	// KEK and creates it in the KBS (create-only); it never leaves this machine otherwise.
	plainRef := env.registryHost + "/veil-test/" + repo + "-plain:v1"
	pushSecretImage(t, plainRef, secretTar(t))
	kekDir := t.TempDir()
	encrypter(t, "--kek-dir", kekDir, "--kbs", kbsHost, "--admin-key", adminKey).
		Encrypt(t, "docker://"+plainRef, "docker://"+env.registryHost+"/veil-test/"+repo+":v1", "kbs:///default/image-kek/confidential")
	ref := gw + "/veil-test/" + repo + ":v1"
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(tag)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("skopeo copy --encryption-key provider:veil:kbs:///default/image-kek/confidential: %s, every layer encrypted; the KEK went to the KBS only", desc.Digest)

	// 2. ... signs it with cosign.
	key := imagesigtest.GenerateKeyPair(t)
	imagesigtest.Sign(t, key, gw+"/veil-test/"+repo+"@"+desc.Digest.String())
	t.Logf("cosign sign --key cosign.key %s/veil-test/%s@%s", gw, repo, desc.Digest)

	// 3. ... seals the database password: the KBS holds it, the pod's YAML only a sealed value.
	dir := t.TempDir()
	sealKey := filepath.Join(dir, "sealing.key")
	kbsCLI := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(binDir, "veil-kbs-client"), append([]string{"--url", kbsHost, "--admin-key", adminKey}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("veil-kbs-client %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	kbsCLI("seal-keygen", "--kid", "kbs:///default/sealed/key", sealKey)
	secretFile := filepath.Join(dir, "db-password")
	if err := os.WriteFile(secretFile, []byte(confidentialSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	kbsCLI("set-resource", "kbs:///default/secret/db", secretFile)
	sealedValue := kbsCLI("seal", "vault", "--key", sealKey, "--kid", "kbs:///default/sealed/key", "kbs:///default/secret/db")
	t.Logf("veil-kbs-client seal vault kbs:///default/secret/db: DB_PASSWORD=%s…", sealedValue[:40])

	// 4. The workload owner runs veil-genpolicy: guest pull, the image security policy, the
	// KBS and the sealed variable, all in the initdata the TEE measures.
	imagePolicy := `{"default": [{"type": "reject"}], "transports": {"docker": {"` + gw + `/veil-test/` + repo + `": [
  {"type": "sigstoreSigned", "keyData": "` + key.KeyData() + `", "signedIdentity": {"type": "matchRepository"}}]}}}`
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = env.pause
	kbsURL := fmt.Sprintf("http://%s:%d", gatewayIP, kbs.Port())
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n[kbs]\nurl = %q\nsealed_secret_keys = [\"kbs:///default/sealed/key\"]\n", gw, kbsURL)
	res, err := genpolicy.Generate(context.Background(), []byte(fmt.Sprintf(confidentialPodYAML, env.registryHost+"/veil-test/"+repo+":v1", sealedValue)), genpolicy.Options{
		Resolver:  &genpolicy.RegistryResolver{PlainHTTPLoopback: true},
		Settings:  settings,
		GuestPull: true, VeilSnapshotter: true,
		ExtraData: map[string]string{initdata.KeyAgent: veilTOML, initdata.KeyImagePolicy: imagePolicy},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := res.Workloads[0]
	t.Logf("veil-genpolicy --guest-pull --veil-snapshotter --image-policy: initdata with policy.rego, veil.toml (KBS %s) and image-policy.json, annotation of %d bytes", kbsURL, len(w.Annotation))
	return confidentialSetup{kbs: kbs, ref: ref, plain: gw + "/veil-test/" + repo + "-plain:v1", sealed: sealedValue, annotation: w.Annotation}
}
