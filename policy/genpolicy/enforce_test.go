package genpolicy_test

import (
	"context"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/policytest"
)

// The baseline judges what genpolicy fills: the supplementary groups containerd gives a
// busybox container pass, one more does not; a required seccomp profile must be there.
// (This evaluates the baseline rules, policy/policies/baseline.rego.)
func TestEnforceIdentityAndSeccomp(t *testing.T) {
	res, _, err := generateFake(t, "{fsGroup: 2000, seccompProfile: {type: RuntimeDefault}}",
		"{name: c, image: busybox}", genpolicy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := entry(t, res, "c")
	e, err := policy.New(res.Workloads[0].Policy)
	if err != nil {
		t.Fatal(err)
	}
	profile := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}
	for _, tc := range []struct {
		name    string
		gids    []uint32
		seccomp *specs.LinuxSeccomp
		reason  string // "" when allowed
	}{
		{"containerd's groups", []uint32{0, 10, 2000}, profile, ""},
		{"a group the image does not give", []uint32{0, 4, 10, 2000}, profile, "4"},
		{"no seccomp profile", []uint32{0, 10, 2000}, nil, "seccomp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := policytest.Spec(specWithout(c))
			spec.Process.User.AdditionalGids = tc.gids
			spec.Linux.Seccomp = tc.seccomp
			d, _ := e.Decide(context.Background(), "CreateContainer", policytest.CreateContainer("id-"+strings.ReplaceAll(tc.name, " ", "-"), spec))
			if d.Allow != (tc.reason == "") || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("allow %v reason %q, want reason containing %q", d.Allow, d.Reason, tc.reason)
			}
		})
	}
}
