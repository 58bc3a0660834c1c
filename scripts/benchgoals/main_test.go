package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/veil-runtime/veil/tests/bench
BenchmarkBootToAgentReady-2   	       1	9000000000 ns/op	         4.400 bare-boot-s	         1.650 ratio	         7.260 veil-boot-s
BenchmarkVeilKernel-2   	       1	9000000000 ns/op	         4.480 bare-debian-s	         2.010 bare-veil-s	         0.45 bare-veil/bare-debian	         0.96 ready-veil/bare-debian	         4.28 veil-ready-s
BenchmarkHealthCheck-2        	       1	 100 ns/op	       350.0 p50-µs
ok  	github.com/veil-runtime/veil/tests/bench	60.1s
pkg: github.com/veil-runtime/veil/tests/shim
BenchmarkRunToFirstOutput-2   	       1	1 ns/op	         7.985 veil-s	         0.1100 runc-s	         7.26 boot-s	         1.1 veil÷boot
BenchmarkFootprint-2          	       1	1 ns/op	        290.0 qemu-PSS-MiB
`

func TestReport(t *testing.T) {
	r, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := r["tests/bench BenchmarkBootToAgentReady"]["veil-boot-s"]; got != 7.26 {
		t.Fatalf("veil-boot-s = %v, want 7.26", got)
	}
	var out strings.Builder
	missing := report(&out, goals, r)
	if missing != 3 { // the agent start, policy and density benchmarks are not in the sample
		t.Errorf("missing = %d, want 3\n%s", missing, out.String())
	}
	for _, want := range []string{
		"boot to agent-ready (veil kernel) ÷ bare boot of Debian's kernel 0.96 ≤ 0.50 not met (bare-veil/bare-debian 0.45, veil-ready-s 4.28, bare-debian-s 4.48)",
		"ctr run to first output ÷ boot to agent-ready 1.10 ≤ 1.20 met",
		"missing: tests/cri BenchmarkDensity pods",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out.String()), " "), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseRejectsBrokenFigures(t *testing.T) {
	for _, in := range []string{
		"BenchmarkX-2  1  100 ns/op  3.0\n",
		"BenchmarkX-2  1  abc ns/op\n",
	} {
		if _, err := parse(strings.NewReader(in)); err == nil {
			t.Errorf("parse(%q): no error", in)
		}
	}
}
