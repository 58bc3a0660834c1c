package policy

import (
	"fmt"
	"testing"

	"github.com/veil-runtime/veil/policy/policytest"
)

// BenchmarkRequestValue is the share of a CreateContainer decision spent building the input:
// the OCI spec, decoded once by ReadRequest, converted to OPA's values (a spec of the size
// BenchmarkCreateContainer in policy/policies judges).
func BenchmarkRequestValue(b *testing.B) {
	c := policytest.Container{Name: "web", Args: []string{"/app/web", "--port", "8080"},
		Volumes: []string{"/data", "/cache", "/config"}}
	for i := 0; i < 16; i++ {
		c.Env = append(c.Env, fmt.Sprintf("SETTING_%d=value-%d", i, i))
	}
	r := ReadRequest("CreateContainer", policytest.CreateContainer("c1", policytest.Spec(c)))
	if r.Err() != nil {
		b.Fatal(r.Err())
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := requestValue(r); err != nil {
			b.Fatal(err)
		}
	}
}
