//go:build e2e

package shim

import (
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/policies"
)

// TestInitDataAnnotation: the pod annotation io.katacontainers.config.hypervisor.cc_init_data
// (base64 of gzip, as the Kata ecosystem writes it) reaches the guest, whose agent enforces
// the policy in it: here allow-all except exec. A bad annotation fails the run and says why.
func TestInitDataAnnotation(t *testing.T) {
	rego := strings.Replace(policies.AllowAll, "default ExecProcessRequest := true\n",
		`ExecProcessRequest := {"allow": false, "reason": "exec is not part of this pod"}`+"\n", 1)
	if rego == policies.AllowAll {
		t.Fatal("the allow-all policy has no ExecProcessRequest default to replace")
	}
	raw, err := initdata.Marshal("sha384", map[string]string{initdata.KeyPolicy: rego})
	if err != nil {
		t.Fatal(err)
	}
	ann, err := initdata.EncodeAnnotation(raw)
	if err != nil {
		t.Fatal(err)
	}
	id := uniqueID(t, "c")
	detached(t, id, "sleep 600", "--annotation", initdata.Annotation+"="+ann)
	r := ctr(t, time.Minute, "task", "exec", "--exec-id", "e1", id, "echo", "hi")
	const want = "ExecProcessRequest denied by policy: exec is not part of this pod"
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("exec under the pod's policy: exit %d stdout %q stderr %q; want a refusal saying %q", r.code, r.stdout, r.stderr, want)
	}
	if st := taskStatus(t, id); st != "RUNNING" {
		t.Fatalf("after the refused exec the task is %q, want RUNNING", st)
	}

	bad := uniqueID(t, "bad")
	r = ctr(t, 2*time.Minute, append(runArgs("--rm", "--annotation", initdata.Annotation+"=not-base64!"), env.image, bad, "true")...)
	if r.code == 0 || !strings.Contains(r.stderr, initdata.Annotation) {
		t.Fatalf("run with a bad initdata annotation: exit %d stderr %q; want a failure naming the annotation", r.code, r.stderr)
	}
	removeContainer(t, bad)
}
