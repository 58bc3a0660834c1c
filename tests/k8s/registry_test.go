//go:build e2e

package k8s

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"sigs.k8s.io/yaml"

	"github.com/veil-runtime/veil/agent/imagepull/imagepulltest"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
	"github.com/veil-runtime/veil/tests/internal/k8scluster"
)

// The registry of the guest-pull pods: one in-memory registry for the package, served on the
// node's bridge (gw, where containerd and the guests reach it, over plain HTTP) and on
// loopback (loop, where the test pushes and veil-genpolicy resolves: it allows plain HTTP to
// loopback only). The images are pushed once: veil-test/busybox:v1 and
// veil-test/encrypted:v1, busybox plus a layer encrypted under a KEK the KBS will hold.

// secretMessage is the encrypted layer's /secret/message.
const secretMessage = "the layer was decrypted in the guest"

type testRegistry struct {
	gw, loop string // host:port on the bridge and on loopback
	kek      []byte // the KEK the encrypted image's layer key is wrapped under (kbs:///default/key/1)
}

var registryOnce struct {
	once sync.Once
	r    *testRegistry
	err  error
}

// sharedRegistry starts the registry and pushes the images, once per test binary.
func sharedRegistry(t testing.TB) *testRegistry {
	t.Helper()
	registryOnce.once.Do(func() { registryOnce.r, registryOnce.err = startRegistry() })
	if registryOnce.err != nil {
		t.Fatal(registryOnce.err)
	}
	return registryOnce.r
}

func startRegistry() (*testRegistry, error) {
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r := &testRegistry{kek: imagepulltest.NewKEK()}
	for _, addr := range []struct {
		listen string
		into   *string
	}{{k8scluster.NodeIP + ":0", &r.gw}, {"127.0.0.1:0", &r.loop}} {
		l, err := net.Listen("tcp", addr.listen)
		if err != nil {
			return nil, err
		}
		*addr.into = l.Addr().String()
		go func() { _ = http.Serve(l, h) }() // until the test binary ends
	}
	if err := cluster.PlainHTTPRegistry(r.gw); err != nil {
		return nil, err
	}
	layer, err := busyboximage.Static("var")
	if err != nil {
		return nil, err
	}
	img, err := busyboximage.Image(busyboximage.Shell(), layer)
	if err != nil {
		return nil, err
	}
	if err := busyboximage.Push(r.loop+"/veil-test/busybox:v1", img); err != nil {
		return nil, err
	}
	plain, err := secretTar()
	if err != nil {
		return nil, err
	}
	// containerd unpacks the encrypted layer with the harness's stand-in decoder, which writes
	// this file: the host never has the key.
	if err := os.WriteFile(cluster.EncryptedLayerPath(), plain, 0o644); err != nil {
		return nil, err
	}
	add, err := imagepulltest.EncryptLayer(plain, imagepulltest.Wrapping{KEK: r.kek, Kid: "kbs:///default/key/1"})
	if err != nil {
		return nil, err
	}
	enc := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if enc, err = mutate.Append(enc, mutate.Addendum{Layer: layer, MediaType: types.OCILayer}, add); err != nil {
		return nil, err
	}
	cf, err := enc.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Cmd: []string{"sh"}, Env: []string{busyboximage.Path}}
	if enc, err = mutate.ConfigFile(enc, cf); err != nil {
		return nil, err
	}
	return r, busyboximage.Push(r.loop+"/veil-test/encrypted:v1", enc)
}

// secretTar is the encrypted layer's content: /secret/message.
func secretTar() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	msg := secretMessage + "\n"
	for _, h := range []*tar.Header{
		{Name: "secret/", Mode: 0o755, Typeflag: tar.TypeDir},
		{Name: "secret/message", Mode: 0o644, Size: int64(len(msg)), Typeflag: tar.TypeReg},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	if _, err := tw.Write([]byte(msg)); err != nil {
		return nil, err
	}
	return buf.Bytes(), tw.Close()
}

// loopbackResolver resolves the bridge's name of the registry through its loopback name.
type loopbackResolver struct {
	r    *testRegistry
	base genpolicy.Resolver
}

func (l loopbackResolver) Resolve(ctx context.Context, ref string) (*genpolicy.Image, error) {
	return l.base.Resolve(ctx, strings.Replace(ref, l.r.gw, l.r.loop, 1))
}

// genpolicyYAML runs veil-genpolicy's library on the pod YAML as a user would run
// `veil-genpolicy --guest-pull --initdata veil.toml=...` on it: the agent may pull from the
// registry over plain HTTP and, when kbsURL is not "", gets its keys from that KBS. It
// returns the YAML with the initdata annotation and the annotation.
func genpolicyYAML(t testing.TB, r *testRegistry, podYAML, kbsURL string) (string, string) {
	t.Helper()
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = k8scluster.PauseImage
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n", r.gw)
	if kbsURL != "" {
		veilTOML += fmt.Sprintf("[kbs]\nurl = %q\n", kbsURL)
	}
	res, err := genpolicy.Generate(context.Background(), []byte(podYAML), genpolicy.Options{
		Resolver:  loopbackResolver{r, &genpolicy.RegistryResolver{PlainHTTPLoopback: true}},
		Settings:  settings,
		GuestPull: true,
		ExtraData: map[string]string{initdata.KeyAgent: veilTOML},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Warnings {
		t.Logf("veil-genpolicy: warning: %s", w)
	}
	return string(res.YAML), res.Workloads[0].Annotation
}

// editPod parses a pod's YAML, applies edit to it and returns the YAML again.
func editPod(t testing.TB, podYAML string, edit func(pod map[string]any)) string {
	t.Helper()
	var pod map[string]any
	if err := yaml.Unmarshal([]byte(podYAML), &pod); err != nil {
		t.Fatal(err)
	}
	edit(pod)
	out, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// firstContainer is the pod's first container (for editPod).
func firstContainer(pod map[string]any) map[string]any {
	return pod["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
}
