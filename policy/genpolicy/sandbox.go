package genpolicy

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy/policies"
)

// SandboxEntry is the policy entry of the pod's sandbox (pause) container, which containerd's
// CRI creates before the pod's containers and Veil runs in the guest like any other. Its
// spec carries no container-name annotation, so the baseline matches it by content; the name
// is not a valid Kubernetes container name and cannot collide with one.
const SandboxEntry = "(sandbox)"

// sandboxData makes the sandbox container's entry from the sandbox image, as containerd's CRI
// builds its spec (podsandbox sandboxContainerSpec): the image's entrypoint and cmd, its
// variables and working directory, a read-only root, no_new_privileges (containerd's default
// spec keeps it for the sandbox), the user of sandboxIdentity, no exec and no stdin. It
// returns a warning when the user could not be fully known.
func sandboxData(ctx context.Context, ps *podSpec, s *Settings, r Resolver) (*policies.Container, string, error) {
	img, err := r.Resolve(ctx, s.SandboxImage)
	if err != nil {
		return nil, "", fmt.Errorf("sandbox image (settings.sandbox_image): %w", err)
	}
	args := append(slices.Clone(img.Entrypoint), img.Cmd...)
	if len(args) == 0 {
		return nil, "", fmt.Errorf("sandbox image %s has neither entrypoint nor cmd", s.SandboxImage)
	}
	cwd := img.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	id, err := sandboxIdentity(ps, s.SandboxImage, img)
	if err != nil {
		return nil, "", fmt.Errorf("sandbox: %w", err)
	}
	e := sandboxBase(ps, s)
	e.Image, e.ImageDigest = s.SandboxImage, img.Digest
	e.Args, e.Cwd, e.Env = args, cwd, slices.Clone(img.Env)
	e.Security.Capabilities = slices.Clone(s.Capabilities)
	e.Security.UID, e.Security.GID, e.Security.AdditionalGids = id.uid, id.gid, id.additional
	return e, id.warning, nil
}

// guestPullSandboxData makes the sandbox container's entry under guest pull: the guest
// image's own pause program (policies.Container.PauseBundle) runs instead of the host's pause
// image, which is therefore not resolved. The shim gives the sandbox exactly this process:
// api.PauseCommand as 65535:65535, no variables, no capabilities, no_new_privileges.
func guestPullSandboxData(ps *podSpec, s *Settings) (*policies.Container, error) {
	// containerd's CRI refuses such a pod before the shim sees it.
	if _, err := sandboxUser(podSC(ps)); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	e := sandboxBase(ps, s)
	e.PauseBundle = true
	e.Args, e.Cwd, e.Env = []string{api.PauseCommand}, "/", []string{}
	e.Security.Capabilities = []string{}
	e.Security.UID, e.Security.GID = ptr(int64(api.PauseUID)), ptr(int64(api.PauseUID))
	e.Security.AdditionalGids = []int64{api.PauseUID}
	return e, nil
}

// sandboxBase is what the sandbox entry has in both modes: the sandbox mounts, a read-only
// root, no_new_privileges, the masked and read-only paths, the rlimits and the pod's sysctls
// (containerd's CRI puts them in the sandbox's spec), no exec, no stdin, no seccomp required
// (the kubelet asks for RuntimeDefault, but crictl need not).
func sandboxBase(ps *podSpec, s *Settings) *policies.Container {
	return &policies.Container{
		Name:   SandboxEntry,
		Mounts: maps.Clone(s.SandboxMounts),
		Security: policies.Security{
			NoNewPrivileges: true,
			ReadOnlyRoot:    true,
			Rlimits:         slices.Clone(s.Rlimits),
			MaskedPaths:     slices.Clone(s.MaskedPaths),
			ReadonlyPaths:   slices.Clone(s.ReadonlyPaths),
			Sysctls:         podSysctls(podSC(ps)),
		},
	}
}
