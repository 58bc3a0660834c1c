package kbs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The replicas overlay's patches as written (TestRendered checks the rendering, with
// kubectl): two replicas, the base's flags plus the two key files of the Secret veil-kbs-keys,
// mounted read-only into the pod template, and a ReadWriteMany claim.
func TestReplicasOverlay(t *testing.T) {
	read := func(f string) object {
		data, err := os.ReadFile(filepath.Join("overlays/replicas", f))
		if err != nil {
			t.Fatal(err)
		}
		return parseDocs(t, data)[0]
	}
	patch, pvc := read("deployment.yaml"), read("pvc.yaml")
	var baseDep object
	for _, o := range base(t) {
		if o.Kind == "Deployment" {
			baseDep = o
		}
	}
	if patch.Spec.Replicas == nil || *patch.Spec.Replicas < 2 || patch.Spec.Strategy.Type != "RollingUpdate" {
		t.Errorf("replicas %v, strategy %q", patch.Spec.Replicas, patch.Spec.Strategy.Type)
	}
	if !slices.Equal(pvc.Spec.AccessModes, []string{"ReadWriteMany"}) {
		t.Errorf("claim access modes %q", pvc.Spec.AccessModes)
	}
	pod := patch.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers in the patch", len(pod.Containers))
	}
	c := pod.Containers[0]
	// Lists of strings replace the base's in a strategic merge patch: the patch must carry
	// every base flag.
	want := append(slices.Clone(baseDep.Spec.Template.Spec.Containers[0].Args),
		"--session-key-file=/etc/veil-kbs/keys/session.key", "--token-key-file=/etc/veil-kbs/keys/token-signing-key.pem")
	if !slices.Equal(c.Args, want) {
		t.Errorf("args %q, want the base's and the key files: %q", c.Args, want)
	}
	for _, a := range c.Args {
		name, f, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if name != "session-key-file" && name != "token-key-file" {
			continue
		}
		checkFile(t, pod, c, name, f)
		if _, vol := mountOf(pod, c, f); vol == nil || vol.Secret == nil || vol.Secret.SecretName != keysSecret ||
			vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode&0o027 != 0 {
			t.Errorf("--%s: not in the Secret %s, mounted without access for others", name, keysSecret)
		}
	}
}
