//go:build e2e

package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// regRequest is one request the gateway registry served: from is the client's IP address
// (the TCP peer, which a client cannot choose: containerd reaches the registry on loopback
// through hosts.toml, a guest from its pod address on the CNI bridge).
type regRequest struct{ from, method, path string }

// requestLog records the gateway registry's requests.
type requestLog struct {
	mu   sync.Mutex
	reqs []regRequest
}

func (l *requestLog) record(r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l.mu.Lock()
	l.reqs = append(l.reqs, regRequest{from: host, method: r.Method, path: r.URL.Path})
	l.mu.Unlock()
}

// matching returns the requests whose path starts with prefix.
func (l *requestLog) matching(prefix string) []regRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []regRequest
	for _, r := range l.reqs {
		if strings.HasPrefix(r.path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// fromHost reports whether a request came from the host's containerd (loopback), not a pod.
func (r regRequest) fromHost() bool { return net.ParseIP(r.from).IsLoopback() }

// imageBlobs returns the config and layer digests of the image ref in the loopback registry.
func imageBlobs(t *testing.T, ref string) (config string, layers []string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		layers = append(layers, l.Digest.String())
	}
	return m.Config.Digest.String(), layers
}

// checkGuestOnlyLayers fails unless, in the gateway registry's log of repository repo (e.g.
// "veil-test/busybox"), containerd on the host fetched the manifest and the config but not
// one layer blob (no GET, no HEAD), and, when guestPulled, a guest fetched every layer. ref is
// the image in the loopback registry (same content). An image whose config blob containerd
// already holds (another image's of the same content) is checked with haveConfig: containerd
// does not fetch a blob it has.
func checkGuestOnlyLayers(t *testing.T, log *requestLog, repo, ref string, guestPulled bool, haveConfig ...bool) {
	t.Helper()
	config, layers := imageBlobs(t, ref)
	var hostManifest, hostConfig bool
	for _, r := range log.matching("/v2/" + repo + "/") {
		switch {
		case !r.fromHost():
		case strings.Contains(r.path, "/manifests/"):
			hostManifest = true
		case strings.HasSuffix(r.path, "/blobs/"+config):
			hostConfig = true
		}
	}
	if len(haveConfig) > 0 && haveConfig[0] {
		hostConfig = true
	}
	if !hostManifest || !hostConfig {
		t.Errorf("%s: containerd fetched the manifest %v, the config %v; want both", repo, hostManifest, hostConfig)
	}
	for _, l := range layers {
		var host, guest []string
		for _, r := range log.matching("/v2/" + repo + "/blobs/" + l) {
			if r.fromHost() {
				host = append(host, r.method+" from "+r.from)
			} else if r.method == http.MethodGet {
				guest = append(guest, r.from)
			}
		}
		if len(host) != 0 {
			t.Errorf("%s: the host fetched layer %s: %v", repo, l, host)
		}
		if guestPulled && len(guest) == 0 {
			t.Errorf("%s: no guest fetched layer %s", repo, l)
		}
	}
	t.Logf("%s: containerd fetched the manifest and config only, none of the %d layers (guest pulled: %v)", repo, len(layers), guestPulled)
}

// criClient is containerd's CRI image service, as the kubelet talks to it.
func criClient(t testing.TB) runtimeapi.ImageServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+env.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return runtimeapi.NewImageServiceClient(conn)
}

// pullFor pulls ref for the runtime handler as the kubelet does with its
// RuntimeClassInImageCriApi feature gate: ImageSpec.runtime_handler is the pod's handler, from
// which containerd picks the handler's snapshotter.
func pullFor(t testing.TB, handler, ref string) {
	t.Helper()
	if err := pullForErr(t, handler, ref); err != nil {
		t.Fatalf("PullImage %s for %s: %v", ref, handler, err)
	}
}

func pullForErr(t testing.TB, handler, ref string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := criClient(t).PullImage(ctx, &runtimeapi.PullImageRequest{
		Image:         &runtimeapi.ImageSpec{Image: ref, RuntimeHandler: handler},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "pull", Namespace: "default", Uid: "pull"}},
	})
	return err
}

// pullWithAnnotation pulls ref with crictl, the pod config carrying containerd's
// io.containerd.cri.runtime-handler annotation: what a kubelet without the feature gate sends
// for a pod with that annotation (containerd 2.4 still honours it, with a deprecation warning).
func pullWithAnnotation(t *testing.T, handler, ref string) {
	t.Helper()
	cfg := map[string]any{
		"metadata":    map[string]any{"name": "pull", "namespace": "default", "uid": "pull-annotation"},
		"annotations": map[string]string{"io.containerd.cri.runtime-handler": handler},
	}
	data, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "pull-pod.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	crictl(t, "pull", "--pod-config", path, ref)
}

// snapshotsOf lists the snapshot keys of snapshotter in containerd's k8s.io namespace (ctr).
func snapshotsOf(t *testing.T, snapshotter string) string {
	t.Helper()
	out, err := runCmd(ctrPath(t), "--address", env.Socket, "-n", "k8s.io", "snapshots", "--snapshotter", snapshotter, "ls")
	if err != nil {
		t.Fatalf("ctr snapshots --snapshotter %s ls: %v\n%s", snapshotter, err, out)
	}
	return out
}

// containerSnapshotter is the snapshotter containerd made container id's root with.
func containerSnapshotter(t *testing.T, id string) string {
	t.Helper()
	out := crictl(t, "inspect", "-o", "go-template", "--template", "{{.info.snapshotter}}", id)
	return strings.TrimSpace(out)
}

func runCmd(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// chainIDs are the layer snapshots' names (chain IDs) of the image ref in the loopback
// registry.
func chainIDs(t *testing.T, ref string) []string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var ids []digest.Digest
	for _, d := range cf.RootFS.DiffIDs {
		ids = append(ids, digest.Digest(d.String()))
	}
	var out []string
	for _, c := range identity.ChainIDs(ids) {
		out = append(out, c.String())
	}
	return out
}

// TestSnapshotterCoexists (no VM): on the containerd whose veil-pull handler uses
// veil-snapshotter, a plain pod (runc) still runs on overlayfs; an image pulled for veil-pull
// is a chain of remote snapshots in veil-snapshotter, none of its layers fetched; a removed
// layer snapshot comes back at the next pull, still without a layer fetched; and with the
// snapshotter's socket gone, a pull fails naming the socket, then works again once it is
// restarted on the same root, whose snapshots survived.
func TestSnapshotterCoexists(t *testing.T) {
	networkPrereqs(t)
	ensureBridge(t)
	reg := startGatewayRegistry(t)
	gw := fmt.Sprintf("%s:%d", gatewayIP, reg.port)
	writeGuestPullConfigs(t, gw, reg.port)

	podCfg := podConfig(t, "plain-runc", nil)
	podID := crictl(t, "runp", "--runtime", "runc", podCfg)
	t.Cleanup(func() {
		_, _, _ = env.crictl(time.Minute, "stopp", podID)
		_, _, _ = env.crictl(time.Minute, "rmp", "-f", podID)
	})
	cid := startContainer(t, podID, podCfg, "plain", "echo plain-ok; exec sleep 3600")
	waitLog(t, cid, "plain-ok")
	if sn := containerSnapshotter(t, cid); sn != "overlayfs" {
		t.Errorf("the runc container's snapshotter is %q, want overlayfs", sn)
	}

	local := env.registryHost + "/veil-test/remote:v1"
	pushUnique(t, local, "remote", nil)
	ref := gw + "/veil-test/remote:v1"
	pullFor(t, pullHandler, ref)
	checkGuestOnlyLayers(t, &reg.log, "veil-test/remote", local, false)
	chains := chainIDs(t, local)
	top := chains[len(chains)-1]
	checkRemote := func(when string) {
		t.Helper()
		list := snapshotsOf(t, containerdenv.SnapshotterName)
		for _, c := range chains {
			if !strings.Contains(list, c) {
				t.Fatalf("%s: layer snapshot %s not in veil-snapshotter:\n%s", when, c, list)
			}
		}
		if over := snapshotsOf(t, "overlayfs"); strings.Contains(over, top) {
			t.Fatalf("%s: the image's top layer is unpacked in overlayfs too", when)
		}
		info, err := runCmd(ctrPath(t), "--address", env.Socket, "-n", criNamespace, "snapshots", "--snapshotter",
			containerdenv.SnapshotterName, "info", top)
		// The layer's labels: remote, and the image and layer the transfer service's remote
		// snapshot annotations name.
		if err != nil || !strings.Contains(info, `"io.veil.snapshot.remote": "true"`) ||
			!strings.Contains(info, `"containerd.io/snapshot/cri.image-ref": "`+ref+`"`) ||
			!strings.Contains(info, `"containerd.io/snapshot/cri.layer-digest": "sha256:`) {
			t.Fatalf("%s: ctr snapshots info %s: %v\n%s", when, top, err, info)
		}
	}
	checkRemote("after the pull")

	// A removed layer snapshot is made again (remote) at the next pull; still no layer fetched.
	if out, err := runCmd(ctrPath(t), "--address", env.Socket, "-n", criNamespace, "snapshots", "--snapshotter",
		containerdenv.SnapshotterName, "rm", top); err != nil {
		t.Fatalf("ctr snapshots rm %s: %v\n%s", top, err, out)
	}
	if list := snapshotsOf(t, containerdenv.SnapshotterName); strings.Contains(list, top) {
		t.Fatalf("%s still listed after its removal", top)
	}
	pullFor(t, pullHandler, ref)
	checkRemote("after a removal and a new pull")
	checkGuestOnlyLayers(t, &reg.log, "veil-test/remote", local, false)

	// The snapshotter gone: a clear error naming its socket.
	socket := env.snap.Socket
	env.snap.Stop()
	pushUnique(t, env.registryHost+"/veil-test/nosnap:v1", "nosnap", nil)
	err := pullForErr(t, pullHandler, gw+"/veil-test/nosnap:v1")
	if err == nil || !strings.Contains(err.Error(), socket) {
		t.Fatalf("pull with veil-snapshotter stopped: %v, want an error naming %s", err, socket)
	}
	t.Logf("snapshotter gone: %v", err)
	if env.snap, err = containerdenv.StartSnapshotter(binDir, env.Dir); err != nil {
		t.Fatal(err)
	}
	// containerd's gRPC connection to the proxy reconnects with a backoff.
	if !waitFor(30*time.Second, func() bool { return pullForErr(t, pullHandler, gw+"/veil-test/nosnap:v1") == nil }) {
		t.Fatalf("pull after restarting veil-snapshotter: %v", pullForErr(t, pullHandler, gw+"/veil-test/nosnap:v1"))
	}
	checkRemote("after a restart")
	checkGuestOnlyLayers(t, &reg.log, "veil-test/nosnap", env.registryHost+"/veil-test/nosnap:v1", false)

	// Removing the images: containerd's garbage collection removes their own (top) layer
	// snapshots from veil-snapshotter (the busybox layer below may serve other tests' images).
	nosnapChains := chainIDs(t, env.registryHost+"/veil-test/nosnap:v1")
	tops := []string{top, nosnapChains[len(nosnapChains)-1]}
	for _, r := range []string{ref, gw + "/veil-test/nosnap:v1"} {
		crictl(t, "rmi", r)
	}
	gone := func() bool {
		list := snapshotsOf(t, containerdenv.SnapshotterName)
		return !strings.Contains(list, tops[0]) && !strings.Contains(list, tops[1])
	}
	if !waitFor(30*time.Second, gone) {
		t.Fatalf("after crictl rmi, veil-snapshotter still has %v:\n%s", tops, snapshotsOf(t, containerdenv.SnapshotterName))
	}
}

func ctrPath(t *testing.T) string {
	t.Helper()
	ctr, err := containerdenv.ToolPath(binDir, "ctr")
	if err != nil {
		t.Fatal(err)
	}
	return ctr
}
