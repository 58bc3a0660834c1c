// Command benchgoals prints the goals of the performance issue (issue 14) side by side with
// what `make bench` measured: it reads the raw `go test -bench` output that scripts/bench.sh
// keeps (the "pkg:" header lines and the Benchmark lines with their b.ReportMetric figures)
// and prints one row per goal: the measure, the figure now, the goal and whether it is met.
// A goal whose figures are missing from the output is reported as such and makes the
// command exit 1, so that a benchmark that stopped reporting cannot pass unnoticed.
//
//	go run ./scripts/benchgoals build/bench.txt
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchgoals BENCH-OUTPUT-FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchgoals:", err)
		os.Exit(2)
	}
	defer f.Close()
	results, err := parse(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchgoals: %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
	if missing := report(os.Stdout, goals, results); missing > 0 {
		fmt.Fprintf(os.Stderr, "benchgoals: %d goal(s) without figures in %s\n", missing, os.Args[1])
		os.Exit(1)
	}
}

// report writes the goal table and returns how many goals had no figures.
func report(w io.Writer, gs []goal, r results) (missing int) {
	fmt.Fprintf(w, "%-58s %12s %10s  %s\n", "goal (issue 14)", "now", "goal", "")
	for _, g := range gs {
		now, ok := g.value(r)
		if !ok {
			missing++
			fmt.Fprintf(w, "%-58s %12s %10s  missing: %s\n", g.name, "-", g.goalString(), g.source())
			continue
		}
		verdict := "met"
		if !g.met(now) {
			verdict = "not met"
		}
		if d := g.details(r); d != "" {
			verdict += " (" + d + ")"
		}
		fmt.Fprintf(w, "%-58s %12s %10s  %s\n", g.name, g.format(now), g.goalString(), verdict)
	}
	return missing
}
