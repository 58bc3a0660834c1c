package design

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/veil-runtime/veil/"

// deps lists the packages pattern depends on (go list -deps), test files not included.
func deps(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pattern).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pattern, err, msg)
	}
	return strings.Fields(string(out))
}

// under reports whether pkg is dir or below it (dir relative to the module).
func under(pkg, dir string) bool {
	p := module + dir
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

// TestImportRules: each rule names who may not import what; the test fails with every
// offending import.
//
// agent/api is the host<->guest protocol: the messages and service, and every name both sides
// spell (storage drivers, guest paths, annotation keys, the transport's port and port name,
// the guest image's files). It imports nothing of the module, so that anyone may import it:
// the shim and veil-ctl, which speak it, the QEMU driver, which names the agent's port, the
// image builder, which places the files init and the agent use, the agent, which serves it, and
// policy/, which judges its requests (the policy's input is the request as agent/api decodes
// it). Nothing else under agent/ is imported by the host side or by policy/.
func TestImportRules(t *testing.T) {
	rules := []struct {
		who       string   // a go list pattern
		forbidden []string // directories of the module
		allowed   []string // exceptions below a forbidden directory
		external  []string // import path prefixes outside the module
		only      []string // when set, the only directories of the module who may depend on
	}{
		{who: module + "agent/api/...", only: []string{"agent/api"}},
		{who: module + "cmd/veil-agent", forbidden: []string{"shim", "hypervisor", "attestation/kbs", "policy/genpolicy", "guest-image"}},
		{who: module + "agent/...", forbidden: []string{"shim", "hypervisor", "attestation/kbs", "policy/genpolicy", "guest-image"}},
		{who: module + "kbs-client/...", forbidden: []string{"attestation/kbs"}},
		{who: module + "shim/...", forbidden: []string{"agent"}, allowed: []string{"agent/api"}},
		{who: module + "hypervisor/...", forbidden: []string{"agent", "shim", "policy"}, allowed: []string{"agent/api"}},
		{who: module + "guest-image/...", forbidden: []string{"agent", "shim"}, allowed: []string{"agent/api"}},
		{who: module + "attestation/...", external: []string{"github.com/containerd/containerd"}},
		{who: module + "policy/...", forbidden: []string{"agent", "shim", "hypervisor"}, allowed: []string{"agent/api"},
			external: []string{"github.com/containerd/containerd"}},
		// initdata is the one home of the document that every side reads: it depends on none of them.
		{who: module + "initdata", forbidden: []string{"shim", "agent", "policy", "attestation/kbs", "hypervisor", "kbs-client"},
			external: []string{"github.com/containerd/containerd"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.who) {
			if len(r.only) > 0 && strings.HasPrefix(d, module) {
				ok := false
				for _, o := range r.only {
					ok = ok || under(d, o)
				}
				if !ok {
					t.Errorf("%s depends on %s: it may depend on %s only", r.who, d, strings.Join(r.only, ", "))
				}
			}
			for _, f := range r.forbidden {
				if !under(d, f) {
					continue
				}
				ok := false
				for _, a := range r.allowed {
					ok = ok || under(d, a)
				}
				if !ok {
					t.Errorf("%s depends on %s: %s must not import %s/", r.who, d, r.who, f)
				}
			}
			for _, e := range r.external {
				if strings.HasPrefix(d, e) {
					t.Errorf("%s depends on %s: attestation/, policy/ and initdata know nothing about containerd", r.who, d)
				}
			}
		}
	}
}

// TestUnder: attestation/kbswire is not below attestation/kbs.
func TestUnder(t *testing.T) {
	if under(module+"attestation/kbswire/jwe", "attestation/kbs") || !under(module+"attestation/kbs/store", "attestation/kbs") ||
		!under(module+"attestation/kbs", "attestation/kbs") {
		t.Error("under")
	}
}
