package podcgroup

import (
	"strings"
	"testing"
)

func TestResolvePath(t *testing.T) {
	for _, tc := range []struct {
		in, want, wantErr string
	}{
		// cgroupfs driver: containerd's CRI joins cgroup_parent and the sandbox id.
		{in: "/kubepods/besteffort/pod123/abc", want: "/kubepods/besteffort/pod123/abc"},
		{in: "/kubepods/pod1/abc/", want: "/kubepods/pod1/abc"},
		{in: "/a", want: "/a"},
		// systemd driver: slice:prefix:name, as containerd's getCgroupsPath makes it.
		{in: "kubepods-besteffort-pod123.slice:cri-containerd:abc",
			want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod123.slice/cri-containerd-abc.scope"},
		{in: "kubepods.slice:cri-containerd:abc", want: "/kubepods.slice/cri-containerd-abc.scope"},
		{in: ":runc:abc", want: "/system.slice/runc-abc.scope"},
		{in: "-.slice:p:abc", want: "/p-abc.scope"},
		{in: "a-b.slice:p:c-d.slice", want: "/a.slice/a-b.slice/c-d.slice"},
		{in: "a.slice::abc", want: "/a.slice/-abc.scope"}, // runc's getUnitName
		// refused
		{in: "", wantErr: "empty"},
		{in: "kubepods/pod1/abc", wantErr: "not an absolute path"},
		{in: "/", wantErr: "root cgroup"},
		{in: "/kubepods/../../etc", wantErr: `".."`},
		{in: "/kubepods/./x", wantErr: `"."`},
		{in: "/kubepods//x", wantErr: "empty path component"},
		{in: "/..", wantErr: `".."`},
		{in: "kubepods.slice:cri:", wantErr: "empty name"},
		{in: "kubepods:cri:abc", wantErr: "must end in .slice"},
		{in: ".slice:cri:abc", wantErr: "must end in .slice"},
		{in: "a--b.slice:cri:abc", wantErr: "empty component"},
		{in: "-a.slice:cri:abc", wantErr: "empty component"},
		{in: "a.slice:cri:x/../../y", wantErr: "contains a /"},
		{in: "a.slice:cri:../x.slice", wantErr: "contains a /"},
		{in: "a.slice:x/y:abc", wantErr: "contains a /"},
	} {
		got, err := ResolvePath(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ResolvePath(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ResolvePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestExpandSlice: runc's rules (libcontainer/cgroups/systemd ExpandSlice and its tests).
func TestExpandSlice(t *testing.T) {
	for in, want := range map[string]string{
		"-.slice":                   "/",
		"system.slice":              "/system.slice",
		"user-1000.slice":           "/user.slice/user-1000.slice",
		"test-a-b.slice":            "/test.slice/test-a.slice/test-a-b.slice",
		"kubepods-burstable.slice":  "/kubepods.slice/kubepods-burstable.slice",
		"kubepods-pod1234abc.slice": "/kubepods.slice/kubepods-pod1234abc.slice",
	} {
		if got, err := ExpandSlice(in); err != nil || got != want {
			t.Errorf("ExpandSlice(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".slice", "test", "test.slice/x.slice", "test--a.slice", "-test.slice", "test-.slice", "a.slicex"} {
		if got, err := ExpandSlice(in); err == nil {
			t.Errorf("ExpandSlice(%q) = %q, want an error", in, got)
		}
	}
}
