package main

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"

	"github.com/veil-runtime/veil/initdata"
)

func TestRun(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.Config(img, v1.Config{Cmd: []string{"/app"}}); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	aa := filepath.Join(dir, "aa.toml")
	os.WriteFile(pod, []byte("kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: "+host+"/app:1}]\n"), 0o644)
	os.WriteFile(aa, []byte("[token_configs]\n"), 0o644)
	out := filepath.Join(dir, "out.yaml")
	args := []string{"-f", pod, "-o", out, "--out-dir", dir, "--plain-http-loopback", "--sandbox-image", host + "/app:1", "--algorithm", "sha384", "--initdata", "aa.toml=" + aa, "--decision-log"}
	var stderr strings.Builder
	if err := run(context.Background(), args, &stderr); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "pod-p.initdata.toml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := initdata.Parse(raw)
	if err != nil || doc.Algorithm != "sha384" || doc.Data["aa.toml"] != "[token_configs]\n" {
		t.Fatalf("initdata %+v, %v", doc, err)
	}
	if y, _ := os.ReadFile(out); !strings.Contains(string(y), initdata.Annotation) {
		t.Fatalf("output YAML without the annotation:\n%s", y)
	}
	if rego, err := os.ReadFile(filepath.Join(dir, "pod-p.rego")); err != nil || !strings.Contains(string(rego), `"decision_log": true`) {
		t.Fatalf("pod-p.rego without the --decision-log setting (%v)", err)
	}
	// The summary shows each entry's user: the image has no /etc/passwd, so root's gid is 0.
	if !strings.Contains(stderr.String(), "user 0:0 groups [0]") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
	if err := run(context.Background(), []string{"-f", pod}, io.Discard); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("without --plain-http-loopback: %v", err)
	}
	if err := run(context.Background(), nil, io.Discard); err == nil {
		t.Fatal("no -f accepted")
	}
}

// An image genpolicy cannot read (an encrypted layer) gives a warning on stderr; the policy is
// still written.
func TestRunWarning(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:     static.NewLayer([]byte("ciphertext"), "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"),
		MediaType: "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
	})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.Config(img, v1.Config{Cmd: []string{"/app"}, User: "app"}); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/enc:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	os.WriteFile(pod, []byte("kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: "+host+"/enc:1}]\n"), 0o644)
	var stderr strings.Builder
	args := []string{"-f", pod, "-o", filepath.Join(dir, "out.yaml"), "--plain-http-loopback", "--guest-pull"}
	if err := run(context.Background(), args, &stderr); err != nil {
		t.Fatal(err)
	}
	want := "veil-genpolicy: warning: Pod/p: container app: image " + host + "/enc:1: layer 0 is encrypted"
	if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "user *:* groups []") {
		t.Fatalf("stderr:\n%s\nwant %q", stderr.String(), want)
	}
}

// --image-policy writes a checked containers-policy.json into initdata; a policy the agent
// would refuse at boot is refused here, by the same parser, whichever flag carries it.
func TestImagePolicy(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.Config(img, v1.Config{Cmd: []string{"/app"}}); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/app:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	os.WriteFile(pod, []byte("kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: "+host+"/app:1}]\n"), 0o644)
	good := filepath.Join(dir, "policy.json")
	policyText := `{"default":[{"type":"reject"}],"transports":{"docker":{"` + host + `":[{"type":"insecureAcceptAnything"}]}}}`
	os.WriteFile(good, []byte(policyText), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}`), 0o644)
	base := []string{"-f", pod, "-o", filepath.Join(dir, "out.yaml"), "--out-dir", dir, "--plain-http-loopback", "--sandbox-image", "none"}

	if err := run(context.Background(), append(base, "--image-policy", good), io.Discard); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "pod-p.initdata.toml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := initdata.Parse(raw)
	if err != nil || doc.Data[initdata.KeyImagePolicy] != policyText {
		t.Fatalf("initdata %+v, %v", doc, err)
	}
	for _, args := range [][]string{{"--image-policy", bad}, {"--initdata", initdata.KeyImagePolicy + "=" + bad}} {
		err := run(context.Background(), append(base, args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "signedBy (GPG simple signing) is not supported") {
			t.Errorf("%v: %v", args, err)
		}
	}
	err = run(context.Background(), append(base, "--image-policy", good, "--initdata", initdata.KeyImagePolicy+"="+good), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "both set") {
		t.Errorf("two image policies: %v", err)
	}
}

// TestRunVeilSnapshotter: --veil-snapshotter without --guest-pull is refused before any
// registry request (policy/genpolicy's tests cover what it pins).
func TestRunVeilSnapshotter(t *testing.T) {
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	os.WriteFile(pod, []byte("kind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: busybox}]\n"), 0o644)
	var stderr strings.Builder
	err := run(context.Background(), []string{"-f", pod, "--veil-snapshotter"}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "needs guest pull") {
		t.Fatalf("--veil-snapshotter without --guest-pull: %v", err)
	}
}
