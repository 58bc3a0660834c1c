//go:build e2e

package e2e

import (
	"os/exec"
	"path/filepath"
	"testing"

	guestimage "github.com/veil-runtime/veil/guest-image"
)

// TestImageReproducible: two builds of the guest image from the same inputs, into fresh
// directories, give byte-identical kernels and initrds.
func TestImageReproducible(t *testing.T) {
	var digests [2]string
	for i := range digests {
		out := filepath.Join(t.TempDir(), "image")
		cmd := exec.Command(filepath.Join(binDir, "veil-image"), "build", kernelFlag(), "--init", filepath.Join(binDir, "veil-init"),
			"--agent", filepath.Join(binDir, "veil-agent"), "--out", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("veil-image build: %v\n%s", err, b)
		}
		m, err := guestimage.ReadManifest(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Verify(out); err != nil {
			t.Fatalf("build %d does not match its manifest: %v", i, err)
		}
		digests[i] = m.Kernel.SHA384 + " " + m.Initrd.SHA384
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds differ:\n%s\n%s", digests[0], digests[1])
	}
}
