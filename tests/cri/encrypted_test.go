//go:build e2e

package cri

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/sim/psp"
	"github.com/veil-runtime/veil/guest-image/manifest"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/kbs-client/keyprovider/keyprovidertest"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// simImage is the guest image with a sim authority, built once per test binary into the test
// root (the kernel comes from the image cache, so this only packs an initrd).
var simImage struct {
	once sync.Once
	dir  string
	auth *sim.Authority
	err  error
}

// kernelFlag is veil-image's --kernel for the sim image: the kernel of the image under test
// (VEIL_IMAGE), so that a run against a veil-kernel image boots the veil kernel throughout.
func kernelFlag() string {
	m, err := manifest.Read(imageDir)
	if err != nil || m.KernelKind == "" {
		return "--kernel=debian"
	}
	return "--kernel=" + m.KernelKind
}

func simGuestImage(t testing.TB) (string, *sim.Authority) {
	t.Helper()
	simImage.once.Do(func() {
		authDir, image := env.Path("sim-authority"), env.Path("sim-image")
		for _, args := range [][]string{
			{"sim-authority", "--out", authDir},
			{"build", kernelFlag(), "--init", filepath.Join(binDir, "veil-init"), "--agent", filepath.Join(binDir, "veil-agent"),
				"--sim-authority", filepath.Join(authDir, sim.AuthorityFile), "--out", image},
		} {
			if out, err := exec.Command(filepath.Join(binDir, "veil-image"), args...).CombinedOutput(); err != nil {
				simImage.err = fmt.Errorf("veil-image %s: %v\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
		simImage.dir = image
		simImage.auth, simImage.err = sim.LoadAuthority(filepath.Join(authDir, sim.AuthorityFile))
	})
	if simImage.err != nil {
		t.Fatal(simImage.err)
	}
	return simImage.dir, simImage.auth
}

// simMeasurement is the launch measurement the shim's sim PSP reports for a VM of image
// under a handler without kernel_params: the image's command line plus veil.tee=sim. It is
// the one `veil-image reference-values` prints for the image (issue 17), which the test
// checks, so the KBS that accepts the guest accepts it with that command's reference values.
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
	out, err := exec.Command(filepath.Join(binDir, "veil-image"), "reference-values", image).Output()
	if err != nil {
		t.Fatalf("veil-image reference-values %s: %v", image, err)
	}
	rv, err := appraisal.ParseReferenceValues(out, "json")
	if err != nil {
		t.Fatal(err)
	}
	if rv.SNP == nil || len(rv.SNP.Measurements) != 1 || rv.SNP.Measurements[0] != hex.EncodeToString(m[:]) || !rv.SNP.AllowSimulated {
		t.Fatalf("veil-image reference-values %s printed %s; the shim's sim PSP reports %x", image, out, m)
	}
	return m
}

// pushSecretImage pushes the plain image the tests encrypt: the busybox layer, then plain (a
// tar holding /secret/message), with a shell as its command. The repository's name is in the
// config's environment, so each test's image has a config of its own (the tests share one
// containerd, which does not fetch a config blob it already holds).
func pushSecretImage(t testing.TB, ref string, plain []byte) {
	t.Helper()
	base, err := busyboximage.Static("var")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(plain)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: base, MediaType: types.OCILayer}, mutate.Addendum{Layer: secret, MediaType: types.OCILayer}); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Cmd: []string{"sh"}, Env: []string{busyboximage.Path, "VEIL_TEST_IMAGE=" + ref}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	if err := busyboximage.Push(ref, img); err != nil {
		t.Fatal(err)
	}
}

// encrypter is skopeo with veil-keyprovider (docs/keyprovider.md), as a user encrypts an
// image; args are veil-keyprovider's.
func encrypter(t testing.TB, args ...string) keyprovidertest.Encrypter {
	t.Helper()
	skopeo, err := keyprovidertest.Binary()
	if err != nil {
		t.Fatal(err)
	}
	return keyprovidertest.Encrypter{Skopeo: skopeo, KeyProvider: filepath.Join(binDir, "veil-keyprovider"), Args: args}
}

// secretTar is the encrypted layer's content: /secret/message.
func secretTar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	msg := "the layer was decrypted in the guest\n"
	for _, h := range []*tar.Header{
		{Name: "secret/", Mode: 0o755, Typeflag: tar.TypeDir},
		{Name: "secret/message", Mode: 0o644, Size: int64(len(msg)), Typeflag: tar.TypeReg},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tw.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// encryptedPodYAML: app runs from the encrypted image and prints the decrypted file; nokey's
// layer key is wrapped under a KEK the KBS does not have.
const encryptedPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: encrypted
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: app
    image: %s
    command: ["sh", "-c", "echo encrypted-ok; cat /secret/message; exec sleep 3600"]
  - name: nokey
    image: %s
    command: ["sh", "-c", "echo encrypted-ok; cat /secret/message; exec sleep 3600"]
`

// TestEncryptedImage runs a pod of the sim TEE under the veil-pull handler (guest_pull on)
// whose initdata names a KBS on the CNI gateway: the agent attests to it with the sim
// authority of its guest image, gets the key-encryption key kbs:///default/key/1, and the
// container runs from the image whose layer it decrypted. A container whose layer key is
// wrapped under a KEK the KBS does not have is refused with the KBS's answer, and the pod
// keeps running; so is the image in a pod whose KBS does not trust the sim authority.
// containerd on the host has neither a key nor a stream processor: the images are pulled for
// the veil-pull handler, whose snapshotter (veil-snapshotter) leaves every layer to the guest,
// and the registry's log shows that the host fetched none. The images are encrypted as a user
// does it (docs/keyprovider.md): skopeo through veil-keyprovider, which creates the KEK in the
// KBS (create-only) and never hands it to anything else.
func TestEncryptedImage(t *testing.T) {
	reg, gw, kbs, auth := simPullPod(t, 0)
	kbsURL := fmt.Sprintf("http://%s:%d", gatewayIP, kbs.Port())

	// containerd on the host has no key and no stream processor for encrypted layers: it only
	// pulls the manifest and config (veil-snapshotter reports the layers present), so it has
	// nothing to decrypt.
	if cfg, err := os.ReadFile(env.ConfigPath()); err != nil || strings.Contains(string(cfg), "stream_processors") {
		t.Fatalf("containerd's configuration has a stream processor (or cannot be read: %v)", err)
	}
	// The images are encrypted as a user does it: skopeo through veil-keyprovider, which
	// creates the KEK kbs:///default/key/1 in the KBS; nokey's KEK is made air-gapped and never
	// reaches the KBS.
	plainRef := env.registryHost + "/veil-test/plain-secret:v1"
	pushSecretImage(t, plainRef, secretTar(t))
	encrypter(t, "--kek-dir", t.TempDir(), "--kbs", fmt.Sprintf("http://127.0.0.1:%d", kbs.Port()), "--admin-key", kbs.Env.WriteAdminKey(t)).
		Encrypt(t, "docker://"+plainRef, "docker://"+env.registryHost+"/veil-test/encrypted:v1", "kbs:///default/key/1")
	encrypter(t, "--kek-dir", t.TempDir()).
		Encrypt(t, "docker://"+plainRef, "docker://"+env.registryHost+"/veil-test/nokey:v1", "kbs:///default/key/2")
	kek, err := kbs.Env.Store.Get(context.Background(), protocol.ResourcePath{Repository: "default", Type: "key", Tag: "1"})
	if err != nil {
		t.Fatalf("veil-keyprovider did not create the KEK in the KBS: %v", err)
	}
	app, nokey := gw+"/veil-test/encrypted:v1", gw+"/veil-test/nokey:v1"
	for _, ref := range []string{app, nokey} {
		pullFor(t, pullHandler, ref)
	}

	podID, podCfg := runEncryptedPod(t, "encrypted", gw, kbsURL)
	cmd := []string{"sh", "-c", "echo encrypted-ok; cat /secret/message; exec sleep 3600"}

	cid := crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "app", 0, app, nil, cmd), app), podCfg)
	crictl(t, "start", cid)
	out := waitLog(t, cid, "decrypted in the guest")
	t.Logf("the container of the encrypted image: %q", strings.TrimSpace(out))
	if n := kbs.Count("/kbs/v0/attest"); n != 1 {
		t.Errorf("%d attestations to the KBS, want 1", n)
	}
	checkGuestOnlyLayers(t, &reg.log, "veil-test/encrypted", env.registryHost+"/veil-test/encrypted:v1", true)

	bad := crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "nokey", 0, nokey, nil, cmd), nokey), podCfg)
	stdout, errOut, err := env.crictl(2*time.Minute, "start", bad)
	if err == nil {
		t.Fatalf("a container whose layer key the KBS cannot open started (stdout %q)", stdout)
	}
	if !strings.Contains(errOut, "layer decryption failed") || !strings.Contains(errOut, "kbs:///default/key/2") {
		t.Fatalf("missing KEK: want a decryption error naming the key, got %q", errOut)
	}
	t.Logf("missing KEK refused: %s", lineWith(errOut, "kbs:///default/key/2"))
	// nokey's config is encrypted's (same layers, same diff IDs): containerd has it already.
	checkGuestOnlyLayers(t, &reg.log, "veil-test/nokey", env.registryHost+"/veil-test/nokey:v1", false, true)
	if st := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", cid); st != "CONTAINER_RUNNING" {
		t.Fatalf("after the refusal: state %q", st)
	}
	crictl(t, "rm", "-f", bad)
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)

	// A KBS that does not trust the sim authority (it holds the KEK): the attestation, and so
	// the layer, is refused; the pod keeps running.
	untrusting := kbstest.NewKBSWith(t, kbstest.Options{Authority: auth, Untrusted: true, Addr: "0.0.0.0:0"})
	untrusting.Put(t, "default/key/1", kek)
	podID, podCfg = runEncryptedPod(t, "encrypted-untrusted", gw, fmt.Sprintf("http://%s:%d", gatewayIP, untrusting.Port()))
	refused := crictl(t, "create", podID, userImage(t, policyContainerConfig(t, "app", 0, app, nil, cmd), app), podCfg)
	if _, errOut, err = env.crictl(2*time.Minute, "start", refused); err == nil {
		t.Fatal("a container started although the KBS refused the guest's attestation")
	}
	if !strings.Contains(errOut, "layer decryption failed") || !strings.Contains(errOut, "AttestationError") {
		t.Fatalf("untrusted sim root: want the KBS's AttestationError, got %q", errOut)
	}
	t.Logf("attestation refused: %s", lineWith(errOut, "AttestationError"))
	if st := crictl(t, "inspectp", "-o", "go-template", "--template", "{{.status.state}}", podID); st != "SANDBOX_READY" {
		t.Fatalf("after the refusal: pod state %q", st)
	}
	crictl(t, "rm", "-f", refused)
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
}

// simPullPod prepares a sim-TEE guest-pull pod of the veil-pull handler: the gateway
// registry (its address gw, as the guest reaches it), the handler's Veil config (the sim TEE,
// the guest image with the sim authority, guest_pull on) and a KBS on every host address
// that trusts that authority (returned) and the image's launch measurement.
func simPullPod(tb testing.TB, memMiB int) (reg *gatewayRegistry, gw string, kbs *kbstest.KBS, auth *sim.Authority) {
	tb.Helper()
	networkPrereqs(tb)
	ensureBridge(tb)
	image, auth := simGuestImage(tb)
	reg = startGatewayRegistry(tb)
	gw = fmt.Sprintf("%s:%d", gatewayIP, reg.port)
	writeGuestPullConfigs(tb, gw, reg.port)
	writeSimPullConfig(tb, image, memMiB)
	kbs = kbstest.NewKBSWith(tb, kbstest.Options{Authority: auth, Measurements: [][48]byte{simMeasurement(tb, image)}, Addr: "0.0.0.0:0"})
	return reg, gw, kbs, auth
}

// writeSimPullConfig writes the veil-pull handler's configuration: the guest image, the sim
// TEE, guest pull, and memMiB of guest memory (0: the default 512).
func writeSimPullConfig(tb testing.TB, image string, memMiB int) {
	tb.Helper()
	cfg := containerdenv.VeilConfig(image)
	if memMiB != 0 {
		cfg = strings.Replace(cfg, "memory_mib = 512", fmt.Sprintf("memory_mib = %d", memMiB), 1)
	}
	cfg += "tee = \"sim\"\n[runtime]\nguest_pull = true\n"
	if err := os.WriteFile(env.Path(pullConfigName), []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// runEncryptedPod starts a pod (sim TEE, veil-pull handler) with the initdata and policy of
// encryptedPodYAML, its veil.toml naming the gateway registry and the KBS at kbsURL; the pod
// is removed when the test ends.
func runEncryptedPod(t *testing.T, name, gw, kbsURL string) (podID, podCfg string) {
	t.Helper()
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n[kbs]\nurl = %q\n", gw, kbsURL)
	yaml := fmt.Sprintf(encryptedPodYAML, env.registryHost+"/veil-test/encrypted:v1", env.registryHost+"/veil-test/nokey:v1")
	return runGenpolicyPod(t, name, yaml, veilTOML, true)
}

// runGenpolicyPod starts a pod (sim TEE, veil-pull handler) with veil-genpolicy's guest-pull
// initdata and policy for the pod YAML, veilTOML as its veil.toml, with or without
// veil-snapshotter; the pod is removed when the test ends.
func runGenpolicyPod(t *testing.T, name, yaml, veilTOML string, snapshotter bool) (podID, podCfg string) {
	t.Helper()
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = env.pause
	res, err := genpolicy.Generate(context.Background(), []byte(yaml), genpolicy.Options{
		Resolver:  &genpolicy.RegistryResolver{PlainHTTPLoopback: true},
		Settings:  settings,
		GuestPull: true, VeilSnapshotter: snapshotter,
		ExtraData: map[string]string{initdata.KeyAgent: veilTOML},
	})
	if err != nil {
		t.Fatal(err)
	}
	podCfg = podConfig(t, name, map[string]string{initdata.Annotation: res.Workloads[0].Annotation})
	podID = crictl(t, "runp", "--runtime", pullHandler, podCfg)
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})
	return podID, podCfg
}
