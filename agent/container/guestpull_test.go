package container

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/storage"
	"github.com/veil-runtime/veil/policy/policies"
)

// TestGuestPullChecks: an image_guest_pull storage is refused before any pull unless the
// agent has image pull configured, the storage is mounted on root.path and the spec pins a
// well-formed digest.
func TestGuestPullChecks(t *testing.T) {
	const root = "/run/veil/containers/c1/rootfs"
	digest := "sha256:" + strings.Repeat("0f", 32)
	spec := func(annotations map[string]string) *specs.Spec {
		return &specs.Spec{Root: &specs.Root{Path: root}, Annotations: annotations}
	}
	pin := map[string]string{policies.ImageDigestAnnotation: digest}
	st := func(mp string) *api.Storage {
		return &api.Storage{Driver: storage.GuestPullDriver, Source: "registry.example/app:1", MountPoint: mp}
	}
	m, err := NewManager(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.guestPull(context.Background(), "c1", spec(pin), st(root)); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("without SetGuestPull: %v, want FailedPrecondition", err)
	}
	m.SetGuestPull(&storage.GuestPull{Root: t.TempDir()})
	for _, tc := range []struct {
		name string
		spec *specs.Spec
		s    *api.Storage
		want string
	}{
		{"not root.path", spec(pin), st("/run/veil/containers/c1/other"), "is not the oci_spec root.path"},
		{"no digest", spec(nil), st(root), "oci_spec annotation io.veil.image.digest is missing"},
		{"malformed digest", spec(map[string]string{policies.ImageDigestAnnotation: "sha256:XYZ"}), st(root),
			`oci_spec annotation io.veil.image.digest "sha256:XYZ" is not a sha256 digest`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.guestPull(context.Background(), "c1", tc.spec, tc.s)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want InvalidArgument with %q", err, tc.want)
			}
		})
	}
}
