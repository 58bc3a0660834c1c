package policies_test

import (
	"context"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/kbs-client/sealed"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/policy/policytest"
)

// TestSandboxNamespaces: a container may join the sandbox container's namespaces that its
// entry shares, by api.SandboxNamespaceDir only; any other joined namespace is refused with
// its path.
func TestSandboxNamespaces(t *testing.T) {
	data := testData()
	data.Containers[0].Security.SharedNamespaces = []string{"ipc", "uts"}
	e := baselineEngine(t, data)
	join := func(paths map[specs.LinuxNamespaceType]string) *api.CreateContainerRequest {
		s := policytest.Spec(webContainer())
		for i, ns := range s.Linux.Namespaces {
			s.Linux.Namespaces[i].Path = paths[ns.Type]
		}
		return policytest.CreateContainer("c1", s)
	}
	sb := func(t string) string { return api.SandboxNamespaceDir + "/" + t }
	for _, tc := range []struct {
		name  string
		paths map[specs.LinuxNamespaceType]string
		want  string // "" allows
	}{
		{"own namespaces", nil, ""},
		{"the sandbox's ipc and uts", map[specs.LinuxNamespaceType]string{"ipc": sb("ipc"), "uts": sb("uts")}, ""},
		{"the sandbox's uts only", map[specs.LinuxNamespaceType]string{"uts": sb("uts")}, ""},
		{"the sandbox's pid, not shared", map[specs.LinuxNamespaceType]string{"pid": sb("pid")},
			"namespace pid joins an existing one (/run/veil/sandbox/ns/pid)"},
		{"ipc under uts's name", map[specs.LinuxNamespaceType]string{"ipc": sb("uts")},
			"namespace ipc joins an existing one (/run/veil/sandbox/ns/uts)"},
		{"the agent's ipc", map[specs.LinuxNamespaceType]string{"ipc": "/proc/1/ns/ipc"},
			"namespace ipc joins an existing one (/proc/1/ns/ipc)"},
		{"the sandbox's mount namespace", map[specs.LinuxNamespaceType]string{"mount": sb("mount")},
			"namespace mount joins an existing one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Judge(context.Background(), "CreateContainer", join(tc.paths))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" && !d.Allow {
				t.Fatalf("denied: %s", d.Reason)
			}
			if tc.want != "" && (d.Allow || !strings.Contains(d.Reason, tc.want)) {
				t.Fatalf("allow %v, reason %q; want a denial with %q", d.Allow, d.Reason, tc.want)
			}
		})
	}
}

// TestMountOptionsAreSets: a mount must have every option its entry requires; repeating one
// option does not stand in for another (object.subset of an array would count it twice).
func TestMountOptionsAreSets(t *testing.T) {
	data := testData()
	sys := data.Containers[0].Mounts["/sys"]
	sys.Options = []string{"ro", "nosuid"}
	data.Containers[0].Mounts["/sys"] = sys
	e := baselineEngine(t, data)
	for _, tc := range []struct {
		options []string
		allow   bool
	}{
		{[]string{"nosuid", "noexec", "nodev", "ro"}, true},
		{[]string{"ro", "ro"}, false},
		{[]string{"ro"}, false},
	} {
		s := policytest.Spec(webContainer())
		for i := range s.Mounts {
			if s.Mounts[i].Destination == "/sys" {
				s.Mounts[i].Options = tc.options
			}
		}
		d, err := e.Judge(context.Background(), "CreateContainer", policytest.CreateContainer("c1", s))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow != tc.allow {
			t.Errorf("/sys with options %v: allow %v (%s), want %v", tc.options, d.Allow, d.Reason, tc.allow)
		}
	}
}

// TestGuestPathsAgree: the baseline's literals are the agent API's constants, which the shim
// writes and the agent resolves, the obligation the agent enforces and kbs-client/sealed's
// prefix; each driver is spelled once, as its variable's value.
func TestGuestPathsAgree(t *testing.T) {
	for name, value := range map[string]string{
		"sandbox_namespace_dir": api.SandboxNamespaceDir,
		"shared_dir":            api.SharedDir,
		"containers_dir":        api.ContainersDir,
		"emptydir_dir":          api.EmptyDirDir,
		"emptydir_driver":       api.DriverEmptyDir,
		"emptydir_memory":       api.EmptyDirMemory,
		"digest_annotation":     api.ImageDigestAnnotation,
		"virtiofs_driver":       api.DriverVirtioFS,
		"guest_pull_driver":     api.DriverGuestPull,
		"pause_driver":          api.DriverPause,
	} {
		if want := name + ` := "` + value + `"`; !strings.Contains(policies.BaselineRules, want) {
			t.Errorf("baseline.rego lacks %s", want)
		}
	}
	// The fast path spells the digest annotation as a literal.
	if want := `s.annotations["` + api.ImageDigestAnnotation + `"]`; !strings.Contains(policies.BaselineRules, want) {
		t.Errorf("baseline.rego's fast path lacks %s", want)
	}
	if want := `"obligations": {"` + policies.ObligationSealedMounts + `": `; !strings.Contains(policies.BaselineRules, want) {
		t.Errorf("baseline.rego lacks %s", want)
	}
	if want := `sealed_prefix := "` + sealed.Prefix + `"`; !strings.Contains(policies.BaselineRules, want) {
		t.Errorf("baseline.rego lacks %s", want)
	}
	for _, lit := range []string{api.DriverVirtioFS, api.DriverGuestPull, api.DriverPause, api.DriverEmptyDir} {
		if n := strings.Count(policies.BaselineRules, `"`+lit+`"`); n != 1 {
			t.Errorf("baseline.rego spells %q %d times: name it by its variable", lit, n)
		}
	}
	if want := `"` + api.PauseCommand + `"`; strings.Contains(policies.BaselineRules, want) {
		t.Errorf("baseline.rego spells %s: the entry's args carry it", want)
	}
}
