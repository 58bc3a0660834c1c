package policies_test

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
	"github.com/veil-runtime/veil/policy/policytest"
)

// benchData is a genpolicy-sized policy: a pod of three containers (the one judged last),
// each with 13 variables, 2 exec commands and 16 mounts; the spec judged has 16 variables
// (3 added by the runtime) and 16 mounts.
func benchData() (policies.Data, policytest.Container) {
	base := testData()
	web := base.Containers[0]
	var c policytest.Container
	base.Containers = nil
	for i := 0; i < 3; i++ {
		e := web
		e.Name = fmt.Sprintf("app%d", i)
		e.Env = slices.Clone(webEnv)
		for j := 0; j < 10; j++ {
			e.Env = append(e.Env, fmt.Sprintf("SETTING_%d=value-%d-%d", j, i, j))
		}
		e.Exec = append(slices.Clone(web.Exec), []string{"/bin/cat", "/tmp/ready"})
		e.Mounts = maps.Clone(web.Mounts)
		for _, v := range []string{"/cache", "/config"} {
			e.Mounts[v] = web.Mounts["/data"]
		}
		base.Containers = append(base.Containers, e)
		c = webContainer()
		c.Name = e.Name
		c.Env = append(slices.Clone(e.Env), runtimeEnv...)
		c.Volumes = []string{"/data", "/cache", "/config"}
	}
	return base, c
}

// measure runs decide b.N times and reports the p50 and p99 of one decision (wall clock), and
// the process's CPU time per decision (GC included), which a loaded machine disturbs less.
func measure(b *testing.B, decide func() policy.Decision) {
	b.Helper()
	if d := decide(); !d.Allow {
		b.Fatalf("denied: %s", d.Reason)
	}
	times := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		decide()
		times = append(times, time.Since(start))
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds())/1e3, "p99-µs")
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkCreateContainer(b *testing.B) {
	data, c := benchData()
	e := baselineEngine(b, data)
	req := policytest.CreateContainer("c1", policytest.Spec(c))
	ctx := context.Background()
	measure(b, func() policy.Decision { d, _ := e.Judge(ctx, "CreateContainer", req); return d })
}

// BenchmarkCreateContainerUnnamed judges a spec without the CRI name annotation: every entry
// of the policy is a candidate.
func BenchmarkCreateContainerUnnamed(b *testing.B) {
	data, c := benchData()
	e := baselineEngine(b, data)
	s := policytest.Spec(c)
	delete(s.Annotations, "io.kubernetes.cri.container-name")
	req := policytest.CreateContainer("c1", s)
	ctx := context.Background()
	measure(b, func() policy.Decision { d, _ := e.Judge(ctx, "CreateContainer", req); return d })
}

func BenchmarkExecProcess(b *testing.B) {
	data, c := benchData()
	e := baselineEngine(b, data)
	ctx := context.Background()
	if d, _ := e.Decide(ctx, "CreateContainer", policytest.CreateContainer("c1", policytest.Spec(c))); !d.Allow {
		b.Fatal(d.Reason)
	}
	req := policytest.Exec("c1", []string{"/bin/cat", "/tmp/ready"}, webEnv, 1000)
	measure(b, func() policy.Decision { d, _ := e.Judge(ctx, "ExecProcess", req); return d })
}

func BenchmarkReadStdout(b *testing.B) {
	data, _ := benchData()
	e := baselineEngine(b, data)
	var req proto.Message = &api.ReadStreamRequest{ContainerId: "c1", Len: 32768}
	ctx := context.Background()
	measure(b, func() policy.Decision { d, _ := e.Judge(ctx, "ReadStdout", req); return d })
}

// BenchmarkCreateContainerVsDecode is issue 14's goal for the policy: the CreateContainer
// decision ÷ one encoding/json decode of the same request, measured in the same run. The
// request is read once as the agent's interceptor reads it (policy.ReadRequest, which decodes
// the spec that the handler then runs); the decision is what the policy adds to that,
// JudgeRequest: converting the request into OPA's values and evaluating the baseline. Each
// iteration times one decode (policy.DecodeSpec, the agent's own) and one decision back to
// back, so that the machine's load weighs on both alike. decision/decode is the ratio of
// their wall-clock medians (goal ≤ 1); decision/decode-cpu the ratio of the medians of the
// thread's CPU time (the goroutine locked to its thread), which other processes on a loaded
// machine do not inflate, though it misses the garbage collector's background work.
func BenchmarkCreateContainerVsDecode(b *testing.B) {
	data, c := benchData()
	e := baselineEngine(b, data)
	req := policytest.CreateContainer("c1", policytest.Spec(c))
	r := policy.ReadRequest("CreateContainer", req)
	ctx := context.Background()
	if d, err := e.JudgeRequest(ctx, r); !d.Allow {
		b.Fatalf("denied: %s (%v)", d.Reason, err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var decode, decide, decodeCPU, decideCPU []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0, t0 := threadCPU(), time.Now()
		if _, err := policy.DecodeSpec(req.OciSpec); err != nil {
			b.Fatal(err)
		}
		c1, t1 := threadCPU(), time.Now()
		e.JudgeRequest(ctx, r)
		c2, t2 := threadCPU(), time.Now()
		decode, decide = append(decode, t1.Sub(t0)), append(decide, t2.Sub(t1))
		decodeCPU, decideCPU = append(decodeCPU, c1-c0), append(decideCPU, c2-c1)
	}
	b.StopTimer()
	b.ReportMetric(median(decode), "decode-p50-µs")
	b.ReportMetric(median(decide), "decision-p50-µs")
	b.ReportMetric(median(decide)/median(decode), "decision/decode")
	b.ReportMetric(median(decideCPU)/median(decodeCPU), "decision/decode-cpu")
	b.ReportMetric(1, "goal-decision/decode")
}

// median sorts t and returns its middle value in µs.
func median(t []time.Duration) float64 {
	slices.Sort(t)
	return float64(t[len(t)/2].Nanoseconds()) / 1e3
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
