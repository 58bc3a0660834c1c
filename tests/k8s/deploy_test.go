//go:build e2e

package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
	"github.com/veil-runtime/veil/tests/internal/k8scluster"
)

// The node installer as a user installs it (docs/kubernetes.md): the veil-installer image
// built the way `make images` builds it, imported into the node's containerd, and deploy/
// applied through a kustomization of the test's own that patches what this node needs.

// installDir is where the installer puts Veil on the host (deploy/installer.InstallDir).
const installDir = "/opt/veil"

// node is what the DaemonSet tests share: the files built for them and the node's state
// before the install.
type node struct {
	dir          string // the test's files (in the cluster's directory)
	repo         string // the repository's root
	simDir       string // veil-image sim-authority's output: the authority and its roots
	image        string // the guest image with that sim authority: the installer's payload
	kustomize    string // the test kustomization's directory
	configBefore []byte // containerd's configuration file before the install
	restarts     int    // containerd's restarts before the install
}

// veil is the state of the package's one install, made by the first test that needs it.
var veil struct {
	mu         sync.Mutex
	n          *node
	buildErr   error
	installed  bool
	installErr error
}

// requireInstalled builds the images (once) and installs Veil with the DaemonSet unless it is
// installed; a failed build or install fails every later caller at once.
func requireInstalled(t testing.TB) *node {
	t.Helper()
	veil.mu.Lock()
	defer veil.mu.Unlock()
	if veil.n == nil && veil.buildErr == nil {
		veil.n, veil.buildErr = buildNode(t)
	}
	switch {
	case veil.buildErr != nil:
		t.Fatalf("building the installer's image: %v", veil.buildErr)
	case veil.installed:
		return veil.n
	case veil.installErr != nil:
		t.Fatalf("the install failed earlier: %v", veil.installErr)
	}
	if veil.installErr = veil.n.install(t); veil.installErr != nil {
		t.Fatal(veil.installErr)
	}
	veil.installed = true
	return veil.n
}

// repoRoot is the repository's root: the test runs in tests/k8s.
func repoRoot() (string, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "installer.yaml")); err != nil {
		return "", fmt.Errorf("not the repository's root (%s): %w", root, err)
	}
	return root, nil
}

// binDir is VEIL_BIN (make build's binaries), made absolute.
func binDir() string {
	d, _ := filepath.Abs(os.Getenv("VEIL_BIN"))
	return d
}

// run runs a command (in dir when not "") and returns its error with its output.
func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return nil
}

// buildNode builds what `make images` builds, with the guest image of a new sim authority in
// the installer's payload (the veil-sim handler's guests attest with it), and imports both
// images into the node's containerd: static binaries (CGO_ENABLED=0, -trimpath, as make
// images; Go's build cache makes this a link when make images ran), veil-image, veil-deploy
// payload, veil-ociimage.
func buildNode(t testing.TB) (*node, error) {
	start := time.Now()
	repo, err := repoRoot()
	if err != nil {
		return nil, err
	}
	n := &node{dir: cluster.Path("veil-deploy-test"), repo: repo}
	n.simDir, n.image, n.kustomize = filepath.Join(n.dir, "sim"), filepath.Join(n.dir, "image"), filepath.Join(n.dir, "kustomize")
	bins, veilBin := filepath.Join(n.dir, "bin"), binDir()
	for _, tool := range []string{"veil-image", "veil-init", "veil-agent", "veil-ociimage", "veil-kbs-client"} {
		if _, err := os.Stat(filepath.Join(veilBin, tool)); err != nil {
			return nil, fmt.Errorf("%s missing in VEIL_BIN (run `make build`): %w", tool, err)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go command builds the images' static binaries: %w", err)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"static veil-deploy, shim and veil-kbs", func() error {
			return run(repo, []string{"CGO_ENABLED=0"}, goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", bins+"/",
				"./cmd/veil-deploy", "./cmd/containerd-shim-veil-v2", "./cmd/veil-kbs")
		}},
		{"sim authority and guest image", func() error {
			vi := filepath.Join(veilBin, "veil-image")
			if err := run("", nil, vi, "sim-authority", "--out", n.simDir); err != nil {
				return err
			}
			return run("", nil, vi, "build", "--init", filepath.Join(veilBin, "veil-init"), "--agent",
				filepath.Join(veilBin, "veil-agent"), "--sim-authority", filepath.Join(n.simDir, sim.AuthorityFile), "--out", n.image)
		}},
		{"payload", func() error {
			return run("", nil, filepath.Join(bins, "veil-deploy"), "payload", "--out", filepath.Join(n.dir, "payload"),
				"--shim", filepath.Join(bins, "containerd-shim-veil-v2"), "--image", n.image,
				"--config", filepath.Join(repo, "shim", "config", "configuration.toml"))
		}},
		{"veil-installer image", func() error {
			return n.ociImage("veil-installer", "--file", "usr/local/bin/veil-deploy="+filepath.Join(bins, "veil-deploy"),
				"--dir", "tmp=1777", "--tree", "opt/veil-payload="+filepath.Join(n.dir, "payload"),
				"--entrypoint", "/usr/local/bin/veil-deploy")
		}},
		{"veil-kbs image", func() error {
			args := []string{"--file", "usr/local/bin/veil-kbs=" + filepath.Join(bins, "veil-kbs"), "--dir", "tmp=1777",
				"--entrypoint", "/usr/local/bin/veil-kbs", "--user", "65532:65532"}
			if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
				args = append(args, "--file", "etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt")
			}
			return n.ociImage("veil-kbs", args...)
		}},
	}
	var took []string
	for _, s := range steps {
		begin := time.Now()
		if err := s.do(); err != nil {
			return nil, fmt.Errorf("%s: %w", s.what, err)
		}
		took = append(took, fmt.Sprintf("%s %.1f s", s.what, time.Since(begin).Seconds()))
	}
	t.Logf("images built and imported in %.1f s (%s)", time.Since(start).Seconds(), strings.Join(took, ", "))
	return n, nil
}

// ociImage builds the image name:dev with veil-ociimage and imports its archive.
func (n *node) ociImage(name string, args ...string) error {
	archive := filepath.Join(n.dir, name+".oci.tar")
	args = append([]string{"--name", name + ":dev", "--layout", filepath.Join(n.dir, name), "--archive", archive,
		"--label", "org.opencontainers.image.title=" + name}, args...)
	if err := run("", nil, filepath.Join(binDir(), "veil-ociimage"), args...); err != nil {
		return err
	}
	return cluster.ImportImage(archive)
}

// kustomization is the test's: deploy/ as it is, the installer's container patched for this
// node (the simulated TEE on, containerd's configuration, socket and restart command, the
// imported image never pulled).
func (n *node) writeKustomization(restart string) error {
	deploy, err := filepath.Rel(n.kustomize, filepath.Join(n.repo, "deploy"))
	if err != nil {
		return err
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata:
        name: veil-installer
        namespace: veil-system
      spec:
        template:
          spec:
            containers:
              - name: installer
                imagePullPolicy: Never
                env:
                  - name: VEIL_ENABLE_SIM
                    value: "true"
                  - name: VEIL_RESTART
                    value: %q
                  - name: VEIL_CONTAINERD_CONFIG
                    value: %q
                  - name: VEIL_CONTAINERD_SOCKET
                    value: %q
`, deploy, "command:"+restart, cluster.ContainerdConfigPath(), cluster.ContainerdSocket())
	if err := os.MkdirAll(n.kustomize, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.kustomize, "kustomization.yaml"), []byte(k), 0o644)
}

// install applies the kustomization and waits for the DaemonSet's rollout: the installer's
// pod is Ready once the node is installed and labelled.
func (n *node) install(t testing.TB) error {
	start := time.Now()
	if err := cluster.ShareRootMount(); err != nil {
		return err
	}
	if err := cluster.TrackHostPath(installDir); err != nil {
		return fmt.Errorf("%s: %w", installDir, err)
	}
	restart, err := cluster.ContainerdRestartCommand()
	if err != nil {
		return err
	}
	n.restarts = cluster.ContainerdRestarts()
	if n.configBefore, err = os.ReadFile(cluster.ContainerdConfigPath()); err != nil {
		return err
	}
	if err := n.writeKustomization(restart); err != nil {
		return err
	}
	if _, err := cluster.Kubectl(time.Minute, "", "apply", "-k", n.kustomize); err != nil {
		return err
	}
	if _, err := cluster.Kubectl(4*time.Minute, "", "-n", "veil-system", "rollout", "status", "ds/veil-installer",
		"--timeout=3m"); err != nil {
		desc, _ := cluster.Kubectl(time.Minute, "", "-n", "veil-system", "describe", "pods")
		logs, _ := cluster.Kubectl(time.Minute, "", "-n", "veil-system", "logs", "ds/veil-installer", "--tail=40")
		return fmt.Errorf("%w\n%s\ninstaller's log:\n%s", err, desc, logs)
	}
	t.Logf("kubectl apply -k to the installer's rollout done: %.1f s", time.Since(start).Seconds())
	return nil
}

// installerPod is the name of the node's installer pod.
func installerPod(t testing.TB) string {
	t.Helper()
	return kubectl(t, "", "-n", "veil-system", "get", "pod", "-l", "app.kubernetes.io/name=veil-installer",
		"-o", "jsonpath={.items[0].metadata.name}")
}

// nodeLabels are the node's veil.dev/ labels.
func nodeLabels(t testing.TB) map[string]string {
	t.Helper()
	out := kubectl(t, "", "get", "node", k8scluster.NodeName, "-o",
		`go-template={{range $k, $v := .metadata.labels}}{{$k}}={{$v}}{{"\n"}}{{end}}`)
	labels := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "veil.dev/") {
			labels[k] = v
		}
	}
	return labels
}

// runcStillRuns starts a runc pod, waits for it to run (containerd, restarted by the installer,
// still runs runc pods), and deletes it.
func runcStillRuns(t *testing.T, name string) {
	t.Helper()
	_, took := runPod(t, name, "", "echo runc ok; "+idle, time.Minute)
	t.Logf("a runc pod still runs: Running in %s", took.Round(time.Millisecond))
	kubectl(t, "", "delete", "pod", name, "--wait", "--timeout=1m")
}

// idle is the end of a pod's script: wait until SIGTERM, then exit at once (a shell that
// execs sleep as a container's pid 1 would ignore SIGTERM and wait for the grace period).
const idle = "trap 'exit 0' TERM; while :; do sleep 1; done"

// waitFor polls cond every 200 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	return containerdenv.WaitFor(d, 200*time.Millisecond, cond)
}
