package task

import (
	"context"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/pod"
)

func TestGuestRootStorages(t *testing.T) {
	ctx := context.Background()
	ctr := &specs.Spec{Process: &specs.Process{Args: []string{"app"}},
		Annotations: map[string]string{pod.CRIContainerType: "container", pod.CRISandboxID: "sb"}}
	on, off := &podRef{guestPull: true}, &podRef{}
	if st := guestRootStorages(ctx, off, "c1", "reg/app:1", ctr); st != nil {
		t.Fatalf("guest_pull off: %v", st)
	}
	if st := guestRootStorages(ctx, off, "sb", "reg/pause:1", sandboxSpec()); st != nil {
		t.Fatalf("the sandbox container, guest_pull off: %v", st)
	}
	if st := guestRootStorages(ctx, on, "c1", "", ctr); st != nil {
		t.Fatalf("no image: %v", st)
	}
	st := guestRootStorages(ctx, on, "c1", "reg/app:1", ctr)
	if len(st) != 1 || st[0].Driver != api.DriverGuestPull || st[0].Source != "reg/app:1" ||
		st[0].MountPoint != "/run/veil/containers/c1/rootfs" {
		t.Fatalf("storages %v", st)
	}
	if !slices.Equal(ctr.Process.Args, []string{"app"}) {
		t.Fatalf("a pod container's process changed: %v", ctr.Process.Args)
	}
}

func sandboxSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{
			Args: []string{"/bin/sh", "-c", "host code"}, Env: []string{"PATH=/bin"}, Cwd: "/x",
			User:         specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}},
			Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_SYS_ADMIN"}, Effective: []string{"CAP_SYS_ADMIN"}},
		},
		Root: &specs.Root{Path: "rootfs"},
		Annotations: map[string]string{pod.CRIContainerType: "sandbox", pod.CRISandboxID: "sb",
			api.ImageDigestAnnotation: "sha256:" + strings.Repeat("0", 64)},
	}
}

// Under guest pull the sandbox container runs the guest's pause bundle, as the pause
// bundle's process: nothing of the host's pause image is left in its spec.
func TestGuestRootStoragesSandbox(t *testing.T) {
	sb := sandboxSpec()
	st := guestRootStorages(context.Background(), &podRef{guestPull: true}, "sb", "reg/pause:1", sb)
	if len(st) != 1 || st[0].Driver != api.DriverPause || st[0].MountPoint != api.ContainerRootfs("sb") || st[0].Source != "" {
		t.Fatalf("storages %v", st)
	}
	p := sb.Process
	switch {
	case !slices.Equal(p.Args, []string{api.PauseCommand}) || p.Env != nil || p.Cwd != "/":
		t.Errorf("process %v, env %v, cwd %q", p.Args, p.Env, p.Cwd)
	case p.User.UID != api.PauseUID || p.User.GID != api.PauseUID || !slices.Equal(p.User.AdditionalGids, []uint32{api.PauseUID}):
		t.Errorf("user %+v", p.User)
	case p.Capabilities == nil || len(p.Capabilities.Bounding)+len(p.Capabilities.Effective) != 0 || !p.NoNewPrivileges:
		t.Errorf("capabilities %+v, no_new_privileges %v", p.Capabilities, p.NoNewPrivileges)
	case !sb.Root.Readonly:
		t.Error("the pause bundle's root is writable")
	}
	if _, ok := sb.Annotations[api.ImageDigestAnnotation]; ok {
		t.Error("the host's pause image digest is still in the spec")
	}
}
