package genpolicy_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policies"
)

// A busybox-like user database: root is a member of wheel (10), app of staff (50) and of its
// own group (1000), which containerd does not count as supplementary (it is app's primary).
const (
	busyboxPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
`
	busyboxGroup = `root:x:0:
daemon:x:1:
wheel:x:10:root
staff:x:50:app
app:x:1000:app
# a comment
nogroup:x:65534:
`
)

// fakeResolver serves images from a map and records what it was asked.
type fakeResolver struct {
	images map[string]genpolicy.Image
	mu     sync.Mutex
	asked  []string
}

func (r *fakeResolver) Resolve(_ context.Context, ref string) (*genpolicy.Image, error) {
	r.mu.Lock()
	r.asked = append(r.asked, ref)
	r.mu.Unlock()
	img, ok := r.images[ref]
	if !ok {
		return nil, fmt.Errorf("image %q: not found", ref)
	}
	return &img, nil
}

func newFakeResolver() *fakeResolver {
	busybox := genpolicy.Image{Digest: "sha256:" + strings.Repeat("b", 64), Cmd: []string{"sh"},
		Passwd: []byte(busyboxPasswd), Group: []byte(busyboxGroup)}
	named := busybox
	named.User = "app"
	withGroup := busybox
	withGroup.User = "1000:4242" // the kubelet passes the uid alone
	ghost := busybox
	ghost.User = "ghost"
	encrypted := genpolicy.Image{Digest: "sha256:" + strings.Repeat("e", 64), Cmd: []string{"/app"}, User: "app",
		UserFilesUnknown: "layer 0 is encrypted (application/vnd.oci.image.layer.v1.tar+gzip+encrypted)"}
	pause := genpolicy.Image{Digest: "sha256:" + strings.Repeat("p", 64), Entrypoint: []string{"/pause"}, User: "65535:65535"}
	namedPause := busybox
	namedPause.Entrypoint, namedPause.User = []string{"/pause"}, "app:staff"
	return &fakeResolver{images: map[string]genpolicy.Image{
		"busybox": busybox, "named": named, "withgroup": withGroup, "ghost": ghost,
		"encrypted": encrypted, "pause": pause, "namedpause": namedPause,
	}}
}

// generateFake runs Generate on a pod of one container c (a YAML flow mapping) with the pod
// security context psc, against the fake resolver, the sandbox image "pause".
func generateFake(t *testing.T, psc, c string, opts genpolicy.Options) (*genpolicy.Result, *fakeResolver, error) {
	t.Helper()
	r := newFakeResolver()
	opts.Resolver = r
	if opts.Settings == nil {
		opts.Settings = genpolicy.DefaultSettings()
		opts.Settings.SandboxImage = "pause"
	}
	y := "kind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: " + psc + "\n  containers:\n  - " + c + "\n"
	res, err := genpolicy.Generate(context.Background(), []byte(y), opts)
	return res, r, err
}

func entry(t *testing.T, res *genpolicy.Result, name string) policies.Container {
	t.Helper()
	for _, c := range res.Workloads[0].Data.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no entry %s", name)
	return policies.Container{}
}

func idString(p *int64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// The user and supplementary groups containerd's CRI gives a container, resolved in the
// image's /etc/passwd and /etc/group (users.go lists the steps).
func TestContainerIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, psc, c string
		uid, gid     string
		gids         []int64
		warning      string // "" for none
		wantErr      string
	}{
		{"root by default, in wheel", "{}", "{name: c, image: busybox}", "0", "0", []int64{0, 10}, "", ""},
		{"uid alone: gid from passwd", "{}", "{name: c, image: busybox, securityContext: {runAsUser: 1000}}",
			"1000", "1000", []int64{50, 1000}, "", ""},
		{"pod runAsUser", "{runAsUser: 1000}", "{name: c, image: busybox}", "1000", "1000", []int64{50, 1000}, "", ""},
		{"container's runAsUser wins", "{runAsUser: 0}", "{name: c, image: busybox, securityContext: {runAsUser: 1000}}",
			"1000", "1000", []int64{50, 1000}, "", ""},
		{"user name from the image", "{}", "{name: c, image: named}", "1000", "1000", []int64{50, 1000}, "", ""},
		{"image group dropped by the kubelet", "{}", "{name: c, image: withgroup}", "1000", "1000", []int64{50, 1000}, "", ""},
		{"runAsGroup replaces the primary gid", "{}", "{name: c, image: busybox, securityContext: {runAsUser: 1000, runAsGroup: 3000}}",
			"1000", "3000", []int64{50, 3000}, "", ""},
		{"runAsGroup with the image's user name", "{}", "{name: c, image: named, securityContext: {runAsGroup: 3000}}",
			"1000", "3000", []int64{50, 3000}, "", ""},
		{"uid unknown to passwd: gid 0, no groups", "{}", "{name: c, image: busybox, securityContext: {runAsUser: 4242}}",
			"4242", "0", []int64{0}, "", ""},
		{"supplementalGroups and fsGroup", "{runAsUser: 1000, fsGroup: 2000, supplementalGroups: [5000, 10]}", "{name: c, image: busybox}",
			"1000", "1000", []int64{10, 50, 1000, 2000, 5000}, "", ""},
		{"Strict leaves /etc/group out", "{runAsUser: 1000, fsGroup: 2000, supplementalGroups: [5000], supplementalGroupsPolicy: Strict}",
			"{name: c, image: busybox}", "1000", "1000", []int64{1000, 2000, 5000}, "", ""},
		{"Merge named", "{supplementalGroupsPolicy: Merge}", "{name: c, image: busybox}", "0", "0", []int64{0, 10}, "", ""},
		{"unknown user name", "{}", "{name: c, image: ghost}", "", "", nil, "",
			`container c: user ghost: user "ghost" is not in the image's /etc/passwd`},
		{"uid out of range", "{}", "{name: c, image: busybox, securityContext: {runAsUser: 4294967296}}", "", "", nil, "",
			"uid out of range"},
		{"bad supplementalGroupsPolicy", "{supplementalGroupsPolicy: Loose}", "{name: c, image: busybox}", "", "", nil, "",
			`supplementalGroupsPolicy: "Loose"`},
		{"encrypted: a name cannot be resolved", "{fsGroup: 2000}", "{name: c, image: encrypted}", "nil", "nil", []int64{2000},
			"Pod/p: container c: image encrypted: layer 0 is encrypted", ""},
		{"encrypted: uid alone", "{}", "{name: c, image: encrypted, securityContext: {runAsUser: 1000}}", "1000", "nil", nil,
			"its /etc/passwd and /etc/group cannot be read", ""},
		{"encrypted: uid and gid, Merge", "{runAsUser: 1000, runAsGroup: 3000}", "{name: c, image: encrypted}", "1000", "3000",
			[]int64{3000}, "refuses a group that the image's /etc/group would add", ""},
		{"encrypted: fully pinned by the pod", "{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [7], supplementalGroupsPolicy: Strict}",
			"{name: c, image: encrypted}", "1000", "3000", []int64{7, 3000}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _, err := generateFake(t, tc.psc, tc.c, genpolicy.Options{})
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
			warnings := strings.Join(res.Warnings, "\n")
			if (tc.warning == "") != (warnings == "") || !strings.Contains(warnings, tc.warning) {
				t.Fatalf("warnings %q, want %q", res.Warnings, tc.warning)
			}
		})
	}
}

func TestSeccompAndPrivileges(t *testing.T) {
	for _, tc := range []struct {
		name, psc, sc  string
		seccomp, noNew bool
		wantErr        string
	}{
		{"nothing set", "{}", "{}", false, false, ""},
		{"container RuntimeDefault", "{}", "{seccompProfile: {type: RuntimeDefault}}", true, false, ""},
		{"pod Localhost", "{seccompProfile: {type: Localhost, localhostProfile: p.json}}", "{}", true, false, ""},
		{"container Unconfined over pod RuntimeDefault", "{seccompProfile: {type: RuntimeDefault}}",
			"{seccompProfile: {type: Unconfined}}", false, false, ""},
		{"container RuntimeDefault over pod Unconfined", "{seccompProfile: {type: Unconfined}}",
			"{seccompProfile: {type: RuntimeDefault}}", true, false, ""},
		{"unknown type", "{}", "{seccompProfile: {type: Strict}}", false, false, `seccompProfile.type: "Strict"`},
		{"allowPrivilegeEscalation false", "{}", "{allowPrivilegeEscalation: false}", false, true, ""},
		{"allowPrivilegeEscalation true", "{}", "{allowPrivilegeEscalation: true}", false, false, ""},
		{"privileged false, escalation unset", "{}", "{privileged: false}", false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _, err := generateFake(t, tc.psc, "{name: c, image: busybox, securityContext: "+tc.sc+"}", genpolicy.Options{})
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
			if s.SeccompRequired != tc.seccomp || s.NoNewPrivileges != tc.noNew {
				t.Fatalf("seccomp_required %v no_new_privileges %v, want %v %v", s.SeccompRequired, s.NoNewPrivileges, tc.seccomp, tc.noNew)
			}
		})
	}
}

func TestRlimitsAndVolumes(t *testing.T) {
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = "pause"
	if len(settings.Rlimits) != 0 {
		t.Fatalf("default rlimits %v: containerd's CRI sets none", settings.Rlimits)
	}
	nofile := policies.Rlimit{Type: "RLIMIT_NOFILE", Hard: 65536, Soft: 1024}
	settings.Rlimits = []policies.Rlimit{nofile}
	c := "{name: c, image: busybox, volumeMounts: [{name: d, mountPath: /data}, {name: r, mountPath: /ro, readOnly: true}]}"
	for _, guestPull := range []bool{false, true} {
		res, _, err := generateFake(t, "{}", c, genpolicy.Options{Settings: settings, GuestPull: guestPull})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Workloads[0].Data.Containers {
			if !slices.Equal(e.Security.Rlimits, []policies.Rlimit{nofile}) {
				t.Fatalf("guest pull %v: %s: rlimits %v", guestPull, e.Name, e.Security.Rlimits)
			}
			for dst, m := range e.Mounts {
				if (m.Type == "bind") != m.Volume || m.Volume && m.Source != "" || !m.Volume && m.Source == "" {
					t.Fatalf("guest pull %v: %s: mount %s %+v", guestPull, e.Name, dst, m)
				}
			}
		}
		m := entry(t, res, "c").Mounts
		for dst, ro := range map[string]bool{"/data": false, "/ro": true, "/dev/termination-log": false,
			"/var/run/secrets/kubernetes.io/serviceaccount": true, "/etc/hosts": false, "/dev/shm": false} {
			if !m[dst].Volume || slices.Contains(m[dst].Options, "ro") != ro {
				t.Fatalf("mount %s: %+v", dst, m[dst])
			}
		}
		sb := entry(t, res, genpolicy.SandboxEntry).Mounts
		if !sb["/etc/resolv.conf"].Volume || !slices.Equal(sb["/dev/shm"].Options, []string{"ro"}) {
			t.Fatalf("sandbox mounts %+v", sb)
		}
	}
}

// Under guest pull the sandbox runs the guest image's pause program: the sandbox image is
// never resolved and the entry is fixed.
func TestGuestPullSandbox(t *testing.T) {
	res, r, err := generateFake(t, "{runAsUser: 1000, fsGroup: 2000, sysctls: [{name: kernel.shm_rmid_forced, value: '1'}]}",
		"{name: c, image: busybox}", genpolicy.Options{GuestPull: true})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(r.asked, "pause") {
		t.Fatalf("the sandbox image was resolved under guest pull (asked %q)", r.asked)
	}
	s := genpolicy.DefaultSettings()
	id := int64(api.PauseUID)
	want := policies.Container{
		Name: genpolicy.SandboxEntry, PauseBundle: true, Args: []string{api.PauseCommand}, Env: []string{}, Cwd: "/",
		Mounts: s.SandboxMounts,
		Security: policies.Security{
			Capabilities: []string{}, NoNewPrivileges: true, UID: &id, GID: &id, AdditionalGids: []int64{65535},
			Rlimits: []policies.Rlimit{}, ReadOnlyRoot: true, MaskedPaths: s.MaskedPaths, ReadonlyPaths: s.ReadonlyPaths,
			Sysctls: []string{"kernel.shm_rmid_forced"},
		},
	}
	got := entry(t, res, genpolicy.SandboxEntry)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sandbox entry\n%+v\nwant\n%+v", got, want)
	}
	if c := entry(t, res, "c"); !c.GuestPull || c.PauseBundle {
		t.Fatalf("container entry guest_pull %v pause_bundle %v", c.GuestPull, c.PauseBundle)
	}
	// The settings' sandbox image only says whether there is a sandbox: "" leaves it out.
	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = ""
	res, _, err = generateFake(t, "{}", "{name: c, image: busybox}", genpolicy.Options{GuestPull: true, Settings: settings})
	if err != nil || len(res.Workloads[0].Data.Containers) != 1 {
		t.Fatalf("no sandbox image: %v", err)
	}
}

// Without guest pull the sandbox entry's user is the pod's runAsUser[:runAsGroup], else the
// pause image's; containerd's WithUser leaves only the primary gid in its groups.
func TestSandboxIdentity(t *testing.T) {
	for _, tc := range []struct {
		name, psc, image string
		uid, gid         string
		gids             []int64
		wantErr          string
	}{
		{"pause image's numeric user", "{}", "pause", "65535", "65535", []int64{65535}, ""},
		{"pod's groups dropped by WithUser", "{fsGroup: 2000, supplementalGroups: [7]}", "pause", "65535", "65535", []int64{65535}, ""},
		{"pod runAsUser: gid 0 without passwd", "{runAsUser: 1000}", "pause", "1000", "0", []int64{0}, ""},
		{"pod runAsUser and runAsGroup", "{runAsUser: 1000, runAsGroup: 3000}", "pause", "1000", "3000", []int64{3000}, ""},
		{"image user:group by name", "{}", "namedpause", "1000", "50", []int64{50}, ""},
		{"no user at all: root with the pod's groups", "{fsGroup: 2000, supplementalGroups: [7]}", "busybox", "0", "0",
			[]int64{7, 2000}, ""},
		{"runAsGroup without runAsUser", "{runAsGroup: 3000}", "pause", "", "", nil, "runAsGroup without runAsUser"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settings := genpolicy.DefaultSettings()
			settings.SandboxImage = tc.image
			res, _, err := generateFake(t, tc.psc, "{name: c, image: busybox, securityContext: {runAsUser: 0}}",
				genpolicy.Options{Settings: settings})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sb := entry(t, res, genpolicy.SandboxEntry)
			s := sb.Security
			if idString(s.UID) != tc.uid || idString(s.GID) != tc.gid || !slices.Equal(s.AdditionalGids, tc.gids) {
				t.Fatalf("uid %s gid %s additional %v, want %s %s %v", idString(s.UID), idString(s.GID), s.AdditionalGids,
					tc.uid, tc.gid, tc.gids)
			}
			if sb.PauseBundle || sb.ImageDigest == "" || !s.NoNewPrivileges || !s.ReadOnlyRoot || s.SeccompRequired {
				t.Fatalf("sandbox entry %+v", sb)
			}
		})
	}
}
