package pod

import (
	"regexp"
	"strings"
	"testing"
)

func TestVMID(t *testing.T) {
	valid := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	long := strings.Repeat("a", 64)
	ids := []string{"c1", long, "_weird/id", "-x"}
	seen := map[string]bool{}
	for _, id := range ids {
		for _, ns := range []string{"default", "k8s.io"} {
			v := VMID(ns, id)
			if !valid.MatchString(v) {
				t.Errorf("VMID(%q, %q) = %q: not a valid VM id", ns, id, v)
			}
			if seen[v] {
				t.Errorf("VMID(%q, %q) = %q collides", ns, id, v)
			}
			seen[v] = true
		}
	}
}

func TestSandboxOf(t *testing.T) {
	tests := []struct {
		name, id    string
		ann         map[string]string
		wantSandbox string
		wantCreates bool
	}{
		{name: "plain ctr run", id: "c1", wantSandbox: "c1", wantCreates: true},
		{name: "CRI sandbox", id: "p1", ann: map[string]string{CRIContainerType: "sandbox", CRISandboxID: "p1"},
			wantSandbox: "p1", wantCreates: true},
		{name: "CRI container", id: "c2", ann: map[string]string{CRIContainerType: "container", CRISandboxID: "p1"},
			wantSandbox: "p1", wantCreates: false},
		{name: "CRI-O container", id: "c3", ann: map[string]string{CRIOContainerType: "container", CRIOSandboxID: "p2"},
			wantSandbox: "p2", wantCreates: false},
		{name: "group annotation", id: "g-a", ann: map[string]string{GroupAnnotation: "g"},
			wantSandbox: "g", wantCreates: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SandboxOf(tt.id, tt.ann); got != tt.wantSandbox {
				t.Errorf("SandboxOf = %q, want %q", got, tt.wantSandbox)
			}
			if got := IsSandboxContainer(tt.id, tt.ann); got != tt.wantCreates {
				t.Errorf("IsSandboxContainer = %v, want %v", got, tt.wantCreates)
			}
		})
	}
}

func TestCleanupMissing(t *testing.T) {
	if err := Cleanup(t.TempDir() + "/nope"); err != nil {
		t.Fatal(err)
	}
}
