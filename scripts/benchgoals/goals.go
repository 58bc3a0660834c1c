package main

import (
	"fmt"
	"strings"
)

// metric names one figure: a benchmark of a package and a unit of its b.ReportMetric.
type metric struct{ bench, unit string }

func (m metric) String() string { return m.bench + " " + m.unit }

// goal is one row of issue 14's table: the figure is num, or num ÷ den when den is set, and
// it is met when at most (atMost) or at least the target.
type goal struct {
	name     string
	num, den metric
	atMost   bool
	target   float64
	decimals int
	show     []metric // further figures printed beside the verdict
}

func (g goal) value(r results) (float64, bool) {
	n, ok := lookup(r, g.num)
	if !ok {
		return 0, false
	}
	if g.den == (metric{}) {
		return n, true
	}
	d, ok := lookup(r, g.den)
	if !ok || d == 0 {
		return 0, false
	}
	return n / d, true
}

func (g goal) met(v float64) bool {
	if g.atMost {
		return v <= g.target
	}
	return v >= g.target
}

func (g goal) format(v float64) string { return fmt.Sprintf("%.*f", g.decimals, v) }

func (g goal) goalString() string {
	if g.atMost {
		return "≤ " + g.format(g.target)
	}
	return "≥ " + g.format(g.target)
}

func (g goal) source() string {
	if g.den == (metric{}) {
		return g.num.String()
	}
	return g.num.String() + " ÷ " + g.den.String()
}

func (g goal) details(r results) string {
	var parts []string
	for _, m := range g.show {
		if v, ok := lookup(r, m); ok {
			parts = append(parts, fmt.Sprintf("%s %.3g", m.unit, v))
		}
	}
	return strings.Join(parts, ", ")
}

func lookup(r results, m metric) (float64, bool) {
	figs, ok := r[m.bench]
	if !ok {
		return 0, false
	}
	v, ok := figs[m.unit]
	return v, ok
}

// goals are issue 14's, in its order. Every figure is a ratio against a baseline measured
// in the same `make bench` run, except memory (not noisy) and the pod count.
var goals = []goal{
	{
		name: "boot to agent-ready (veil kernel) ÷ bare boot of Debian's kernel",
		num:  metric{"tests/bench BenchmarkVeilKernel", "ready-veil/bare-debian"}, atMost: true, target: 0.5, decimals: 2,
		show: []metric{{"tests/bench BenchmarkVeilKernel", "bare-veil/bare-debian"}, {"tests/bench BenchmarkVeilKernel", "veil-ready-s"},
			{"tests/bench BenchmarkVeilKernel", "bare-debian-s"}},
	},
	{
		name: "ctr run to first output ÷ boot to agent-ready",
		num:  metric{"tests/shim BenchmarkRunToFirstOutput", "veil÷boot"}, atMost: true, target: 1.2, decimals: 2,
		show: []metric{{"tests/shim BenchmarkRunToFirstOutput", "veil-s"}, {"tests/shim BenchmarkRunToFirstOutput", "boot-s"}},
	},
	{
		name: "agent exec to serving ÷ boot to agent-ready",
		num:  metric{"tests/bench BenchmarkAgentStart", "agent÷boot"}, atMost: true, target: 0.05, decimals: 3,
		show: []metric{{"tests/bench BenchmarkAgentStart", "boot-s"}},
	},
	{
		name: "QEMU PSS per busybox pod, MiB (TCG)",
		num:  metric{"tests/shim BenchmarkFootprint", "qemu-PSS-MiB"}, atMost: true, target: 80, decimals: 0,
		show: []metric{{"tests/shim BenchmarkFootprint", "qemu-guest-RAM-MiB"}, {"tests/shim BenchmarkFootprint", "qemu-TCG-cache-MiB"},
			{"tests/shim BenchmarkFootprint", "qemu-other-MiB"}},
	},
	{
		name: "CreateContainer policy decision ÷ one JSON decode of it",
		num:  metric{"policy/policies BenchmarkCreateContainerVsDecode", "decision/decode"}, atMost: true, target: 1, decimals: 2,
		show: []metric{{"policy/policies BenchmarkCreateContainerVsDecode", "decision/decode-cpu"},
			{"policy/policies BenchmarkCreateContainerVsDecode", "decision-p50-µs"}, {"policy/policies BenchmarkCreateContainerVsDecode", "decode-p50-µs"}},
	},
	{
		name: "pods running at once, all healthy",
		num:  metric{"tests/cri BenchmarkDensity", "pods"}, target: 20, decimals: 0,
		show: []metric{{"tests/cri BenchmarkDensity", "all-PSS-MiB/pod"}, {"tests/cri BenchmarkDensity", "host-MiB/pod"},
			{"tests/cri BenchmarkDensity", "last-pod-s"}, {"tests/cri BenchmarkDensity", "last/alone"}},
	},
}
