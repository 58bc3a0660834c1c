package task

import (
	"context"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/shim/pod"
)

func TestGuestPullStorages(t *testing.T) {
	ctx := context.Background()
	ctr := &specs.Spec{Annotations: map[string]string{pod.CRIContainerType: "container", pod.CRISandboxID: "sb"}}
	sb := &specs.Spec{Annotations: map[string]string{pod.CRIContainerType: "sandbox", pod.CRISandboxID: "sb"}}
	on, off := &podRef{guestPull: true}, &podRef{}
	if st := guestPullStorages(ctx, off, "c1", "reg/app:1", ctr); st != nil {
		t.Fatalf("guest_pull off: %v", st)
	}
	if st := guestPullStorages(ctx, on, "sb", "reg/pause:1", sb); st != nil {
		t.Fatalf("the sandbox container: %v", st)
	}
	if st := guestPullStorages(ctx, on, "c1", "", ctr); st != nil {
		t.Fatalf("no image: %v", st)
	}
	st := guestPullStorages(ctx, on, "c1", "reg/app:1", ctr)
	if len(st) != 1 || st[0].Driver != "image_guest_pull" || st[0].Source != "reg/app:1" ||
		st[0].MountPoint != "/run/veil/containers/c1/rootfs" {
		t.Fatalf("storages %v", st)
	}
}
