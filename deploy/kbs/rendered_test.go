//go:build e2e

package kbs

// The kustomizations rendered by kubectl's kustomize: with the Kubernetes suite (make e2e),
// which builds kubectl (make kubernetes).

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestRendered(t *testing.T) {
	for dir, v := range map[string]variant{
		".":                 {tls: true, data: "pvc"},
		"overlays/hostpath": {tls: true, data: "hostPath"},
		"overlays/sim-http": {sim: true, data: "emptyDir"},
		"overlays/replicas": {tls: true, data: "pvc", replicas: 2},
	} {
		t.Run(dir, func(t *testing.T) { checkKBS(t, kustomize(t, dir), v) })
	}
}

// kustomize renders dir with `kubectl kustomize` or `kustomize build`.
func kustomize(t *testing.T, dir string) []object {
	t.Helper()
	var cmd *exec.Cmd
	if p := os.Getenv("KUBECTL"); p != "" {
		cmd = exec.Command(p, "kustomize", dir)
	} else if p, err := exec.LookPath("kubectl"); err == nil {
		cmd = exec.Command(p, "kustomize", dir)
	} else if m, _ := filepath.Glob("/var/cache/veil/kubernetes/*/bin/kubectl"); len(m) > 0 {
		cmd = exec.Command(m[len(m)-1], "kustomize", dir)
	} else if p, err := exec.LookPath("kustomize"); err == nil {
		cmd = exec.Command(p, "build", dir)
	} else {
		t.Fatalf("neither kubectl nor kustomize found to render %s: run `make kubernetes` (kubectl into /var/cache/veil), or set KUBECTL", dir)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	return parseDocs(t, out)
}
