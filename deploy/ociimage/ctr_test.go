package ociimage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tool finds a program in the repository's bin/tools (make containerd) or on PATH.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := filepath.Abs(filepath.Join("..", "..", "bin", "tools", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run `make containerd` (containerd and ctr into bin/tools)", name)
	}
	return p
}

// startContainerd runs a containerd of its own in a temporary root and returns its socket.
func startContainerd(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: containerd runs here to check how `ctr images import` names the image")
	}
	bin := tool(t, "containerd")
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not start:\n%s", log)
		}
	}
}

// `ctr -n k8s.io images import` (through the transfer service and with --local) names the
// image docker.io/library/veil-kbs:dev, the name the CRI looks up for `image: veil-kbs:dev`,
// with the digest Build returned, and unpacks its layer.
func TestIntegrationCtrImport(t *testing.T) {
	sock := startContainerd(t)
	ctr := tool(t, "ctr")
	dir := t.TempDir()
	img, err := Build(kbsSpec(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "veil-kbs.oci.tar")
	if err := img.Write(filepath.Join(dir, "layout"), archive); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var stderr strings.Builder
		cmd := exec.Command(ctr, append([]string{"--address", sock, "-n", "k8s.io"}, args...)...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ctr %q: %v\n%s%s", args, err, out, stderr.String())
		}
		return string(out)
	}
	for _, mode := range [][]string{{}, {"--local"}} {
		run(append(append([]string{"images", "import"}, mode...), archive)...)
		ls := run("images", "ls")
		var found bool
		for _, line := range strings.Split(ls, "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "docker.io/library/veil-kbs:dev" && f[2] == img.Digest.String() {
				found = true
			} else if len(f) >= 3 && f[0] != "REF" {
				t.Errorf("import %q made another image: %s", mode, line)
			}
		}
		if !found {
			t.Fatalf("import %q: docker.io/library/veil-kbs:dev %s not listed:\n%s", mode, img.Digest, ls)
		}
		run("images", "rm", "--sync", "docker.io/library/veil-kbs:dev")
	}
}
