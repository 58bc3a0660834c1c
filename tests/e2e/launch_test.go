//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/attestation/sim"
	guestimage "github.com/veil-runtime/veil/guest-image"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// buildSimImage builds a guest image like `make image`, with a new sim authority in it, into
// dir (the kernel comes from the image cache, so this only packs an initrd).
func buildSimImage(t *testing.T, dir string) string {
	t.Helper()
	run := func(args ...string) {
		cmd := exec.Command(filepath.Join(binDir, "veil-image"), args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("veil-image %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	authDir, image := filepath.Join(dir, "sim"), filepath.Join(dir, "image")
	run("sim-authority", "--out", authDir)
	run("build", kernelFlag(), "--init", filepath.Join(binDir, "veil-init"), "--agent", filepath.Join(binDir, "veil-agent"),
		"--sim-authority", filepath.Join(authDir, sim.AuthorityFile), "--out", image)
	m, err := guestimage.ReadManifest(image)
	if err != nil || m.SimAuthority == nil || m.SimAuthority.Path != sim.GuestAuthorityPath {
		t.Fatalf("sim image manifest: %+v, %v; want its sim authority recorded", m, err)
	}
	return image
}

// bootSim boots a VM of the sim TEE from image with raw as its initdata (nil: none). hostData,
// when not nil, is the host data the host binds to the launch (TEE.HostData, which a host may
// set to anything, as with a real PSP); Boot binds an initdata's digest itself, so raw must
// then be nil. The caller closes it.
func bootSim(id, image string, raw, hostData []byte) (*sandbox.Sandbox, error) {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return sandbox.Boot(c, sandbox.Options{
		ID: id, ImageDir: image, InitData: raw,
		TEE: hypervisor.TEEConfig{Kind: hypervisor.TEESim, HostData: hostData},
	})
}

// The boot-time launch check of the sim TEE: the agent signs a sim SNP report with the image's
// authority, with the host data the sim PSP hands it, and serves only when its HOST_DATA is
// the initdata's digest.
func TestLaunchSim(t *testing.T) {
	image := buildSimImage(t, t.TempDir())
	raw := initData(t, policies.AllowAll)

	t.Run("match", func(t *testing.T) {
		id := vmID("e2e-simok")
		sb, err := bootSim(id, image, raw, nil)
		if err != nil {
			t.Fatalf("a sim VM whose initdata matches the launch did not serve: %v", err)
		}
		defer func() {
			if t.Failed() {
				t.Logf("guest console:\n%s", sandbox.ConsoleTail(sb.VM.ConsoleLog(), 60))
			}
			_ = sb.Close(context.Background())
		}()
		d, err := sb.Agent.GetGuestDetails(ctx(t, 30*time.Second), &api.GetGuestDetailsRequest{})
		if err != nil || d.GetTee() != api.TEESim {
			t.Fatalf("GetGuestDetails: tee %q, %v; want sim", d.GetTee(), err)
		}
		console, _ := os.ReadFile(sb.VM.ConsoleLog())
		if !bytes.Contains(console, []byte("initdata: digest matches the launch's host data (tee sim)")) {
			t.Errorf("the console does not show the launch check passing")
		}
	})

	// A host that binds host data of its own to the launch and gives the guest no initdata:
	// the guest, which then requires zero host data, refuses to serve. (A launch whose host
	// data differs from the digest of the initdata it delivers is the same check with a digest
	// instead of zeros: agent/launch's tests cover it with a real sim PSP disk; the shim binds
	// the digest itself, so a VM test cannot deliver a different one.)
	t.Run("mismatch", func(t *testing.T) {
		id := vmID("e2e-simbad")
		sb, err := bootSim(id, image, nil, bytes.Repeat([]byte{0xAB}, 32))
		if err == nil {
			_ = sb.Close(context.Background())
			t.Fatal("a sim VM whose host data is not what its initdata (none) requires served")
		}
		msg := err.Error()
		if !strings.Contains(msg, "veil-init: powering off") ||
			!strings.Contains(msg, "no initdata disk, but the launch's host data is abababab") {
			t.Fatalf("boot error does not carry the mismatch in init's power-off line:\n%v", err)
		}
		t.Logf("boot refused as expected; power-off line: %s", powerOffLine(msg))
		if _, err := os.Stat(filepath.Join(sandbox.DefaultStateRoot, id+".sim-psp.img")); !os.IsNotExist(err) {
			t.Errorf(".sim-psp.img left after a failed boot: %v", err)
		}
	})
}

// An image built without a sim authority cannot be a sim guest: the agent says why and
// serves nothing.
func TestLaunchSimWithoutAuthority(t *testing.T) {
	sb, err := bootSim(vmID("e2e-simnoauth"), imageDir, initData(t, policies.AllowAll), nil)
	if err == nil {
		_ = sb.Close(context.Background())
		t.Fatal("a sim VM booted from an image without a sim authority served")
	}
	msg := err.Error()
	if !strings.Contains(msg, "veil-init: powering off") || !strings.Contains(msg, "this guest image has no sim authority") {
		t.Fatalf("boot error does not say the image has no sim authority:\n%v", err)
	}
	t.Logf("boot refused as expected; power-off line: %s", powerOffLine(msg))
}
