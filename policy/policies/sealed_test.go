package policies_test

import (
	"context"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/policy/policytest"
)

const sealedValue = "sealed.eyJhbGciOiJFUzI1NiJ9.eyJ2ZXJzaW9uIjoiMC4xLjAifQ.c2ln"

// TestBaselineSealedEnv: a variable the pod declared sealed must carry a sealed value, even
// where a pattern (a secretKeyRef's NAME=.*) would allow any value; a host that swaps it for
// a plaintext of its choosing, or drops the prefix, is refused, at create and at exec.
func TestBaselineSealedEnv(t *testing.T) {
	ctx := context.Background()
	data := testData()
	c := &data.Containers[0]
	c.EnvPatterns = append(c.EnvPatterns, "(?s)^DB_PASSWORD=.*$")
	c.Env = append(c.Env, "API_KEY="+sealedValue) // written sealed in the pod YAML
	c.SealedEnv = []string{"DB_PASSWORD", "API_KEY"}
	c.SealedMounts = []string{"/data"}
	e := baselineEngine(t, data)
	spec := func(env ...string) *policytest.Container {
		w := webContainer()
		w.Env = append(w.Env, env...)
		return &w
	}
	for _, tc := range []struct {
		name string
		c    *policytest.Container
		want string // "" allowed
	}{
		{"both sealed", spec("DB_PASSWORD=sealed.other.value.sig", "API_KEY="+sealedValue), ""},
		{"a sealed variable left out", spec("API_KEY=" + sealedValue), ""},
		{"plaintext for a secretKeyRef", spec("DB_PASSWORD=hunter2", "API_KEY="+sealedValue),
			"environment variable DB_PASSWORD must carry a sealed secret (sealed....), not another value"},
		{"prefix case changed", spec("DB_PASSWORD=Sealed.x.y.z", "API_KEY="+sealedValue), "DB_PASSWORD must carry a sealed secret"},
		{"pinned sealed value swapped for plaintext", spec("DB_PASSWORD=sealed.a.b.c", "API_KEY=hunter2"),
			"environment variable API_KEY is not allowed with this value; environment variable API_KEY must carry a sealed secret"},
		{"pinned sealed value swapped for another sealed value", spec("API_KEY=sealed.x.y.z"), "environment variable API_KEY is not allowed with this value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Judge(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(*tc.c)))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if !d.Allow {
					t.Fatalf("denied: %s", d.Reason)
				}
				// The volume the pod marked sealed is the agent's obligation.
				if m, _ := d.Obligations["sealed_mounts"].([]any); len(m) != 1 || m[0] != "/data" {
					t.Fatalf("obligations %v", d.Obligations)
				}
				return
			}
			if d.Allow || !strings.Contains(d.Reason, tc.want) {
				t.Fatalf("decision %+v, want a denial with %q", d, tc.want)
			}
			if strings.Contains(d.Reason, "hunter2") {
				t.Fatalf("the reason holds the value: %s", d.Reason)
			}
		})
	}
	// An exec carries the same variables.
	d, _ := e.Judge(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(*spec("DB_PASSWORD=sealed.a.b.c", "API_KEY="+sealedValue))))
	if !d.Allow {
		t.Fatalf("create: %s", d.Reason)
	}
	if err := e.Commit(d); err != nil {
		t.Fatal(err)
	}
	probe := []string{"/app/healthcheck", "--quick"}
	if d, _ := e.Decide(ctx, "ExecProcess", policytest.Exec("c1", probe, append(append([]string{}, webEnv...), "DB_PASSWORD=sealed.a.b.c"), 1000)); !d.Allow {
		t.Fatalf("exec with the sealed value: %s", d.Reason)
	}
	if d, _ := e.Decide(ctx, "ExecProcess", policytest.Exec("c1", probe, append(append([]string{}, webEnv...), "DB_PASSWORD=hunter2"), 1000)); d.Allow ||
		!strings.Contains(d.Reason, "DB_PASSWORD must carry a sealed secret") {
		t.Fatalf("exec with a plaintext: %+v", d)
	}
}
