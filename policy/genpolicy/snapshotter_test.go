package genpolicy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/policy/genpolicy"
)

// TestVeilSnapshotterIdentity: with --guest-pull --veil-snapshotter, containerd's CRI resolves
// the user in the empty root file system veil-snapshotter gives it (pkg/oci WithUser,
// WithAdditionalGIDs with no /etc/passwd or /etc/group), and the policy pins exactly that,
// whatever the image's own files say: a uid alone gets gid 0, the groups are the primary gid
// and the pod's, a name is refused with the reason. An encrypted image's user is then fully
// known (no warning).
func TestVeilSnapshotterIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, psc, c string
		uid, gid     string
		gids         []int64
		wantErr      string
	}{
		// The image's /etc/group puts root in wheel (10): containerd does not see it.
		{"root by default, no wheel", "{}", "{name: c, image: busybox}", "0", "0", []int64{0}, ""},
		// passwd says gid 1000 and staff (50): containerd sees neither.
		{"uid alone: gid 0", "{}", "{name: c, image: busybox, securityContext: {runAsUser: 1000}}", "1000", "0", []int64{0}, ""},
		{"runAsGroup", "{}", "{name: c, image: busybox, securityContext: {runAsUser: 1000, runAsGroup: 3000}}",
			"1000", "3000", []int64{3000}, ""},
		{"pod groups kept", "{runAsUser: 1000, fsGroup: 2000, supplementalGroups: [5000, 10]}", "{name: c, image: busybox}",
			"1000", "0", []int64{0, 10, 2000, 5000}, ""},
		{"Strict", "{runAsUser: 1000, supplementalGroups: [5000], supplementalGroupsPolicy: Strict}", "{name: c, image: busybox}",
			"1000", "0", []int64{0, 5000}, ""},
		{"image user name with a pod uid", "{runAsUser: 1000}", "{name: c, image: named}", "1000", "0", []int64{0}, ""},
		{"encrypted image, uid known", "{}", "{name: c, image: encrypted, securityContext: {runAsUser: 1000}}", "1000", "0", []int64{0}, ""},
		{"image user name refused", "{}", "{name: c, image: named}", "", "", nil,
			`container c: user app: user "app"; under veil-snapshotter containerd looks users up in an empty root file system`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _, err := generateFake(t, tc.psc, tc.c, genpolicy.Options{GuestPull: true, VeilSnapshotter: true})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := entry(t, res, "c").Security
			if idString(s.UID) != tc.uid || idString(s.GID) != tc.gid || !slices.Equal(s.AdditionalGids, tc.gids) {
				t.Fatalf("uid %s gid %s additional %v, want %s %s %v", idString(s.UID), idString(s.GID), s.AdditionalGids,
					tc.uid, tc.gid, tc.gids)
			}
			if len(res.Warnings) != 0 {
				t.Fatalf("warnings %q", res.Warnings)
			}
		})
	}
	// Without guest pull the host would share the empty roots: refused.
	if _, _, err := generateFake(t, "{}", "{name: c, image: busybox}", genpolicy.Options{VeilSnapshotter: true}); err == nil ||
		!strings.Contains(err.Error(), "needs guest pull") {
		t.Fatalf("VeilSnapshotter without GuestPull: %v", err)
	}
	// Guest pull without the snapshotter keeps the image's files (containerd unpacks them).
	res, _, err := generateFake(t, "{}", "{name: c, image: busybox, securityContext: {runAsUser: 1000}}", genpolicy.Options{GuestPull: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := entry(t, res, "c").Security; idString(s.GID) != "1000" || !slices.Equal(s.AdditionalGids, []int64{50, 1000}) {
		t.Fatalf("guest pull with the host unpacking: gid %s groups %v", idString(s.GID), s.AdditionalGids)
	}
}
