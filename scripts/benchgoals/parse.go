package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// modulePath is stripped from package paths: results are keyed "tests/shim BenchmarkX".
const modulePath = "github.com/veil-runtime/veil/"

// results maps "PKG BENCHMARK" (the package relative to the module, the benchmark without
// its -GOMAXPROCS suffix) to the benchmark's figures by unit.
type results map[string]map[string]float64

// benchLine is a benchmark result line: the name, the iteration count, then value-unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// parse reads `go test -bench` output. A benchmark that reports twice (-count > 1) keeps
// its last figures.
func parse(r io.Reader) (results, error) {
	res := results{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(strings.TrimSpace(p), modulePath)
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fields := strings.Fields(m[3])
		if len(fields)%2 != 0 {
			return nil, fmt.Errorf("line %d: %q: figures do not come in value-unit pairs", n, line)
		}
		figs := map[string]float64{}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: figure %q of %s: %v", n, fields[i], m[1], err)
			}
			figs[fields[i+1]] = v
		}
		res[pkg+" "+m[1]] = figs
	}
	return res, sc.Err()
}
