//go:build e2e

package cri

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/internal/faultserver"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/shim/pod"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// pullHandler is the CRI runtime handler whose Veil config has guest_pull on; its config file
// (pullConfigName in the test root) is written by TestGuestPull, since the shim reads it only
// when a pod starts.
const (
	pullHandler    = "veil-pull"
	pullConfigName = "veil-pull.toml"
)

// pullRuntime is the containerd.toml fragment of the veil-pull handler (appended to the CRI
// configuration, which defines the other handlers): its snapshotter is veil-snapshotter, so
// that images pulled for it (PullImage with its runtime handler) leave their layers to the
// guest.
func (e *criEnv) pullRuntime() string {
	return fmt.Sprintf(`[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.%s]
  runtime_type = 'io.containerd.veil.v2'
  snapshotter = '`+containerdenv.SnapshotterName+`'
  pod_annotations = ['io.veil.config.*', 'io.katacontainers.config.hypervisor.cc_init_data']
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.%[1]s.options]
    ConfigPath = %q
`, "'"+pullHandler+"'", e.Path(pullConfigName))
}

// guestPullPodYAML is the pod of TestGuestPull: app runs from the pulled image and prints the
// command line of the pod's first process (the sandbox container's: the pod shares its
// process namespace) and the guest's mount of its root; tampered names an image whose
// manifest the registry swaps.
const guestPullPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: pulled
spec:
  shareProcessNamespace: true
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: app
    image: %s
    securityContext:
      runAsUser: 65534
    command: ["sh", "-c", "echo pulled-ok; echo id=$(id -u):$(id -g):$(id -G); echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); grep lowerdir /proc/self/mountinfo; echo mounts-listed; exec sleep 3600"]
    env:
    - name: GREETING
      value: hello
  - name: tampered
    image: %s
    command: ["sh", "-c", "echo pulled-ok; echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); grep lowerdir /proc/self/mountinfo; echo mounts-listed; exec sleep 3600"]
    env:
    - name: GREETING
      value: hello
`

// gatewayRegistry serves the test registry's content on every host address (the pod reaches
// it on the CNI bridge's gateway): a reverse proxy that, once tamper is set, answers
// manifest requests of veil-test/tampered with the busybox image's manifest. It runs on a
// faultserver, so that a test can kill it in the middle of a blob and start it again.
type gatewayRegistry struct {
	srv    *faultserver.Server
	port   int
	tamper atomic.Bool
	log    requestLog // every request, with its origin
}

func startGatewayRegistry(t testing.TB) *gatewayRegistry {
	t.Helper()
	target, err := url.Parse(env.registry.URL)
	if err != nil {
		t.Fatal(err)
	}
	g := &gatewayRegistry{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	g.srv = faultserver.StartOn(t, "0.0.0.0:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.log.record(r)
		if g.tamper.Load() && strings.HasPrefix(r.URL.Path, "/v2/veil-test/tampered/manifests/") {
			r.URL.Path = "/v2/veil-test/busybox/manifests/latest"
		}
		proxy.ServeHTTP(w, r)
	}))
	g.port = g.srv.Port()
	return g
}

// ensureBridge creates the CNI bridge with the gateway address when no pod has made it yet,
// so that the host reaches the gateway registry before the first pod (the bridge plugin
// takes an existing bridge that already has its gateway address).
func ensureBridge(t testing.TB) {
	t.Helper()
	if exec.Command("ip", "link", "show", bridgeName).Run() == nil {
		return
	}
	for _, args := range [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", gatewayIP + "/24", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// writeGuestPullConfigs writes the veil-pull handler's Veil config (guest_pull on) and the
// gateway registry's hosts.toml (containerd on the host reaches it on loopback).
func writeGuestPullConfigs(t testing.TB, gw string, port int) {
	t.Helper()
	// 1 GiB: the guest pulls images into its memory (TestGuestPullOutlivesTimeout's is 200 MiB).
	cfg := strings.Replace(containerdenv.VeilConfig(imageDir), "memory_mib = 512", "memory_mib = 1024", 1) +
		"[runtime]\nguest_pull = true\n"
	if err := os.WriteFile(env.Path(pullConfigName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(env.Path("certs.d"), gw)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	server := fmt.Sprintf("http://127.0.0.1:%d", port)
	hosts := fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", server, server)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestGuestPull runs a pod under the veil-pull handler (guest_pull on) with a policy
// veil-genpolicy made with --guest-pull and initdata that lets the agent reach the gateway
// registry over plain HTTP: the container runs from the image the agent pulled into
// /run/veil/images (its root is an overlay on the cache, and the host shares no rootfs for
// it), and a container whose registry content no longer matches the pinned digest is refused.
func TestGuestPull(t *testing.T) {
	networkPrereqs(t)
	ensureBridge(t)
	reg := startGatewayRegistry(t)
	gw := fmt.Sprintf("%s:%d", gatewayIP, reg.port)
	writeGuestPullConfigs(t, gw, reg.port)

	// The app's image (busybox and a layer of its own, which no host has ever seen) and the
	// image the registry will later serve tampered content for (the same, another variant).
	// Both are pulled for the veil-pull handler, whose snapshotter is veil-snapshotter: the
	// first as a kubelet with RuntimeClassInImageCriApi does (ImageSpec.runtime_handler), the
	// second as one without it for a pod with the io.containerd.cri.runtime-handler annotation.
	pushUnique(t, env.registryHost+"/veil-test/guestonly:v1", "guestonly", nil)
	pushUnique(t, env.registryHost+"/veil-test/tampered:v1", "tampered", []string{"VARIANT=tampered"})
	appImage, tampered := gw+"/veil-test/guestonly:v1", gw+"/veil-test/tampered:v1"
	pullFor(t, pullHandler, appImage)
	pullWithAnnotation(t, pullHandler, tampered)
	checkGuestOnlyLayers(t, &reg.log, "veil-test/tampered", env.registryHost+"/veil-test/tampered:v1", false)

	// genpolicy resolves through the loopback name of the same registry (it allows plain
	// HTTP on loopback only); the policy pins digests, not names.
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = env.pause
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n", gw)
	yaml := fmt.Sprintf(guestPullPodYAML, env.registryHost+"/veil-test/guestonly:v1", env.registryHost+"/veil-test/tampered:v1")
	res, err := genpolicy.Generate(context.Background(), []byte(yaml), genpolicy.Options{
		Resolver:  &genpolicy.RegistryResolver{PlainHTTPLoopback: true},
		Settings:  settings,
		GuestPull: true, VeilSnapshotter: true,
		ExtraData: map[string]string{initdata.KeyAgent: veilTOML},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := res.Workloads[0]

	podCfg := podConfig(t, "pulled", map[string]string{initdata.Annotation: w.Annotation})
	podID := crictl(t, "runp", "--runtime", pullHandler, podCfg)
	vm := pod.VMID(criNamespace, podID)
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})
	cmd := []string{"sh", "-c", `echo pulled-ok; echo pid1=$(tr '\0' ' ' < /proc/1/cmdline); grep lowerdir /proc/self/mountinfo; echo mounts-listed; exec sleep 3600`}
	greeting := []map[string]string{{"key": "GREETING", "value": "hello"}}

	appCmd := []string{"sh", "-c", `echo pulled-ok; echo id=$(id -u):$(id -g):$(id -G); echo pid1=$(tr '\0' ' ' < /proc/1/cmdline); grep lowerdir /proc/self/mountinfo; echo mounts-listed; exec sleep 3600`}
	cid := crictl(t, "create", podID, runAs(t, sharePID(t, userImage(t, policyContainerConfig(t, "app", 0, appImage, greeting, appCmd), appImage)), 65534), podCfg)
	crictl(t, "start", cid)
	out := waitLog(t, cid, "mounts-listed") // the log may hold "pulled-ok" before the mounts
	checkPulled(t, out, w.Data.Containers[0].ImageDigest)
	// containerd fetched the manifest and config, the guest every layer, the host none.
	checkGuestOnlyLayers(t, &reg.log, "veil-test/guestonly", env.registryHost+"/veil-test/guestonly:v1", true)
	// runAsUser 65534 is nobody:nogroup (65534) in the image's /etc/passwd, but containerd
	// looked the user up in the empty root veil-snapshotter gives it: gid 0, as the policy
	// (genpolicy --veil-snapshotter) pinned; the agent enforced that spec.
	if !strings.Contains(out, "id=65534:0:0\n") {
		t.Errorf("the app's identity: want id=65534:0:0 (containerd's resolution in an empty root):\n%s", out)
	}
	if sn := containerSnapshotter(t, cid); sn != containerdenv.SnapshotterName {
		t.Errorf("the guest-pull container's snapshotter is %q, want %q", sn, containerdenv.SnapshotterName)
	}
	// The host shares no root file system: the app's is pulled in the guest, the sandbox
	// container's is the guest's pause bundle; only bind mounts' sources are shared.
	shared := filepath.Join(pod.DirOf(vm), "shared")
	for _, id := range []string{cid, podID} {
		if _, err := os.Stat(filepath.Join(shared, id, "rootfs")); !os.IsNotExist(err) {
			t.Errorf("the host shares a rootfs for %s: %s (err %v)", id, filepath.Join(shared, id, "rootfs"), err)
		}
	}
	// The pod's first process is the guest's pause program, not the host's pause image
	// (busybox's sh running busyboximage.PauseScript here).
	if !strings.Contains(out, "pid1=/pause\n") {
		t.Fatalf("the sandbox container does not run the guest's /pause:\n%s", out)
	}

	// The registry now answers for the tampered image with another manifest: the guest's
	// pull by the pinned digest must refuse it, and the pod keeps running.
	reg.tamper.Store(true)
	bad := crictl(t, "create", podID, sharePID(t, userImage(t, policyContainerConfig(t, "tampered", 0, tampered, greeting, cmd), tampered)), podCfg)
	stdout, errOut, err := env.crictl(2*time.Minute, "start", bad)
	if err == nil {
		t.Fatalf("a container whose registry content does not match its digest started (stdout %q)", stdout)
	}
	if !strings.Contains(errOut, "digest mismatch") {
		t.Fatalf("tampered image: want a digest mismatch, got %q", errOut)
	}
	t.Logf("tampered image refused: %s", lineWith(errOut, "digest mismatch"))
	if st := crictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}}", cid); st != "CONTAINER_RUNNING" {
		t.Fatalf("after the refusal: state %q", st)
	}
	crictl(t, "rm", "-f", bad)
	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	checkGone(t, podID, vm)

	// The same policy on the handler that shares containerd's rootfs: the pod's sandbox
	// container would run the host's pause image, and is refused, so the pod never starts.
	sharedCfg := podConfig(t, "pulled-shared", map[string]string{initdata.Annotation: w.Annotation})
	stdout, errOut, err = env.crictl(3*time.Minute, "runp", "--runtime", handler, sharedCfg)
	if err == nil {
		_, _, _ = env.crictl(time.Minute, "stopp", strings.TrimSpace(stdout))
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", strings.TrimSpace(stdout))
		t.Fatal("a pod whose sandbox container runs the host's pause image started under the guest-pull policy")
	}
	if !strings.Contains(errOut, "must be the guest's pause bundle") {
		t.Fatalf("the host's pause image under the guest-pull policy: stderr %q", errOut)
	}
	t.Logf("the host's pause image refused: %s", lineWith(errOut, "pause bundle"))
}

// pushUnique pushes to ref an image of the busybox layer and a layer of its own (a file
// /unique/<tag> with the time in it), so that no host has its layers before the test.
func pushUnique(t *testing.T, ref, tag string, env []string) {
	t.Helper()
	base, err := busyboximage.Static("var")
	if err != nil {
		t.Fatal(err)
	}
	own, err := busyboximage.Layer(func(tw *tar.Writer) error {
		body := []byte(tag + " " + time.Now().Format(time.RFC3339Nano) + "\n")
		if err := tw.WriteHeader(&tar.Header{Name: "unique/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: "unique/" + tag, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := busyboximage.Shell()
	cfg.Env = append(cfg.Env, env...)
	img, err := busyboximage.Image(cfg, base, own)
	if err != nil {
		t.Fatal(err)
	}
	if err := busyboximage.Push(ref, img); err != nil {
		t.Fatal(err)
	}
}

// runAs sets the container config's run_as_user, as the kubelet does for runAsUser.
func runAs(t *testing.T, path string, uid int) string {
	t.Helper()
	return editConfig(t, path, func(cfg map[string]any) {
		cfg["linux"].(map[string]any)["security_context"].(map[string]any)["run_as_user"] = map[string]any{"value": uid}
	})
}

// sharePID makes the container config at path join the pod's process namespace (CRI's
// NamespaceMode POD), as the kubelet does for a pod with shareProcessNamespace.
func sharePID(t *testing.T, path string) string {
	t.Helper()
	return editConfig(t, path, func(cfg map[string]any) {
		cfg["linux"].(map[string]any)["security_context"].(map[string]any)["namespace_options"] = map[string]any{"pid": 0}
	})
}

// editConfig applies edit to the JSON config at path and returns path.
func editConfig(t testing.TB, path string, edit func(map[string]any)) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineWith returns the first line of s that contains want, for the test's log.
func lineWith(s, want string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, want) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// userImage sets the container config's image.user_specified_image to ref, the name CRI puts
// in the image-name annotation (without it, containerd's name for the image: the busybox image
// also has a loopback name, which the guest cannot reach).
func userImage(t testing.TB, path, ref string) string {
	t.Helper()
	return editConfig(t, path, func(cfg map[string]any) {
		cfg["image"] = map[string]any{"image": ref, "user_specified_image": ref}
	})
}

// checkPulled fails unless the container's log shows its root as an overlay whose lower
// directory is the guest's image cache entry for digest.
func checkPulled(t *testing.T, log, digest string) {
	t.Helper()
	hex := strings.TrimPrefix(digest, "sha256:")
	lower := "lowerdir=" + api.ImagesDir + "/images/sha256/" + hex + "/"
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, " - overlay ") && strings.Contains(line, lower) {
			t.Logf("the container's root in the guest: %s", line)
			return
		}
	}
	t.Fatalf("the container's root is not an overlay on %s...:\n%s", lower, log)
}
