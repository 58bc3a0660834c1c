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
func TestImportRules(t *testing.T) {
	rules := []struct {
		who       string   // a go list pattern
		forbidden []string // directories of the module
		allowed   []string // exceptions below a forbidden directory
		external  []string // import path prefixes outside the module
	}{
		{who: module + "cmd/veil-agent", forbidden: []string{"shim", "hypervisor", "attestation/kbs"}},
		{who: module + "agent/...", forbidden: []string{"shim", "hypervisor", "attestation/kbs"}},
		{who: module + "kbs-client/...", forbidden: []string{"attestation/kbs"}},
		{who: module + "shim/...", forbidden: []string{"agent"}, allowed: []string{"agent/api"}},
		{who: module + "attestation/...", external: []string{"github.com/containerd/containerd"}},
		{who: module + "policy/...", external: []string{"github.com/containerd/containerd"}},
		// initdata is the one home of the document that every side reads: it depends on none of them.
		{who: module + "initdata", forbidden: []string{"shim", "agent", "policy", "attestation/kbs", "hypervisor", "kbs-client"},
			external: []string{"github.com/containerd/containerd"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.who) {
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
