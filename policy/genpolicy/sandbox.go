package genpolicy

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/veil-runtime/veil/policy/policies"
)

// SandboxEntry is the policy entry of the pod's sandbox (pause) container, which containerd's
// CRI creates before the pod's containers and Veil runs in the guest like any other. Its
// spec carries no container-name annotation, so the baseline matches it by content; the name
// is not a valid Kubernetes container name and cannot collide with one.
const SandboxEntry = "(sandbox)"

// sandboxData makes the sandbox container's entry from the sandbox image, as containerd's CRI
// builds its spec: the image's entrypoint and cmd, its variables and working directory, a
// read-only root, no exec and no stdin.
func sandboxData(ctx context.Context, s *Settings, r Resolver) (*policies.Container, error) {
	img, err := r.Resolve(ctx, s.SandboxImage)
	if err != nil {
		return nil, fmt.Errorf("sandbox image (settings.sandbox_image): %w", err)
	}
	args := append(slices.Clone(img.Entrypoint), img.Cmd...)
	if len(args) == 0 {
		return nil, fmt.Errorf("sandbox image %s has neither entrypoint nor cmd", s.SandboxImage)
	}
	cwd := img.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	zero := int64(0)
	return &policies.Container{
		Name: SandboxEntry, Image: s.SandboxImage, ImageDigest: img.Digest,
		Args: args, Cwd: cwd, Env: slices.Clone(img.Env),
		Mounts: maps.Clone(s.SandboxMounts),
		Security: policies.Security{
			Capabilities:  slices.Clone(s.Capabilities),
			UID:           &zero,
			GID:           &zero,
			ReadOnlyRoot:  true,
			MaskedPaths:   slices.Clone(s.MaskedPaths),
			ReadonlyPaths: slices.Clone(s.ReadonlyPaths),
		},
	}, nil
}
