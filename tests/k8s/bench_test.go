//go:build e2e

package k8s

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/shim/pod"
)

// benchSimYAML is the veil-sim pod of the benchmark: busybox from the registry, pulled by the
// guest (guest_pull), under the policy veil-genpolicy makes for it.
const benchSimYAML = `apiVersion: v1
kind: Pod
metadata:
  name: bench-sim
spec:
  runtimeClassName: veil-sim
  terminationGracePeriodSeconds: 2
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: main
    image: %s/veil-test/busybox:v1
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo bench; ` + idle + `"]
`

// BenchmarkApplyToRunning measures `kubectl apply` to Running of a busybox pod with runc,
// with the veil handler and with veil-sim (guest pull, under its policy), side by side: the
// classes take turns, VEIL_K8S_BENCH_SAMPLES rounds (default 3), each pod deleted before the
// next. It reports each class's p50 and its ratio to runc's, and the memory a Veil pod costs
// the node (the PSS of its QEMU, virtiofsd and shim, smaps_rollup, once its container has
// printed) against its RuntimeClass's declared overhead (deploy/runtimeclasses.yaml).
//
//	VEIL_IMAGE=$PWD/build/image VEIL_BIN=$PWD/bin go test -tags e2e -run '^$' -bench . ./tests/k8s/
func BenchmarkApplyToRunning(b *testing.B) {
	requireInstalled(b)
	reg := sharedRegistry(b)
	samples := 3
	if v, err := strconv.Atoi(os.Getenv("VEIL_K8S_BENCH_SAMPLES")); err == nil && v > 0 {
		samples = v
	}
	simYAML, _ := genpolicyYAML(b, reg, fmt.Sprintf(benchSimYAML, reg.gw), "")
	classes := []string{"runc", "veil", "veil-sim"}
	took := map[string][]float64{}
	pss := map[string][]float64{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for s := 0; s < samples; s++ {
			for _, class := range classes {
				name := fmt.Sprintf("bench-%s-%d-%d", class, i, s)
				y := podYAML(name, map[string]string{"runc": "", "veil": "veil"}[class], "echo bench; "+idle)
				if class == "veil-sim" {
					y = editPod(b, simYAML, func(p map[string]any) { p["metadata"].(map[string]any)["name"] = name })
				}
				p, d := applyRunning(b, name, y, 5*time.Minute)
				took[class] = append(took[class], d.Seconds())
				if class != "runc" {
					if m, err := podPSS(b, name, p.Metadata.UID); err != nil {
						b.Errorf("%s: PSS: %v", name, err)
					} else {
						pss[class] = append(pss[class], m)
					}
				}
				kubectl(b, "", "delete", "pod", name, "--wait", "--timeout=2m")
			}
		}
	}
	b.StopTimer()
	runc := median(took["runc"])
	declared := declaredOverheadMiB(b, "veil")
	var table []string
	for _, class := range classes {
		p50 := median(took[class])
		b.ReportMetric(p50, "s-p50-"+class)
		line := fmt.Sprintf("%-9s apply→Running p50 %6.2f s (%s), %5.1f× runc", class, p50, seconds(took[class]), p50/runc)
		if class != "runc" {
			b.ReportMetric(p50/runc, "x-runc-"+class)
			m := median(pss[class])
			b.ReportMetric(m, "MiB-pss-"+class)
			line += fmt.Sprintf("; QEMU+virtiofsd+shim PSS p50 %.0f MiB (%s) vs the RuntimeClass's overhead %.0f MiB",
				m, seconds(pss[class]), declared)
		}
		table = append(table, line)
	}
	b.Logf("%d rounds:\n%s", samples, strings.Join(table, "\n"))
}

// podPSS waits until the pod's container has printed (it runs in the VM), then sums the PSS
// of its QEMU, virtiofsd and shim, in MiB.
func podPSS(tb testing.TB, name, uid string) (float64, error) {
	tb.Helper()
	if !waitFor(time.Minute, func() bool {
		out, _ := cluster.Kubectl(time.Minute, "", "logs", name)
		return strings.Contains(out, "bench")
	}) {
		return 0, fmt.Errorf("no log line from %s", name)
	}
	out, err := cluster.Crictl(time.Minute, "pods", "-q", "--label", "io.kubernetes.pod.uid="+uid)
	if err != nil {
		return 0, err
	}
	ids := strings.Fields(out)
	if len(ids) != 1 {
		return 0, fmt.Errorf("sandboxes %q", out)
	}
	sandbox := ids[0]
	var qemu []int
	for _, q := range qemuOf(sandbox) {
		pid, _ := strconv.Atoi(q)
		qemu = append(qemu, pid)
	}
	if len(qemu) != 1 {
		return 0, fmt.Errorf("QEMU processes %v", qemu)
	}
	var total float64
	var parts []string
	for _, g := range []struct {
		what string
		pids []int
	}{{"QEMU", qemu}, {"virtiofsd", virtiofsdOf(pod.VMID(criNamespace, sandbox))}, {"shim", shimsOf(sandbox)}} {
		m, err := pssMiB(g.pids)
		if err != nil {
			return 0, err
		}
		total += m
		parts = append(parts, fmt.Sprintf("%s %.1f", g.what, m))
	}
	tb.Logf("%s: PSS %.1f MiB (%s)", name, total, strings.Join(parts, ", "))
	return total, nil
}

// declaredOverheadMiB is the RuntimeClass's overhead.podFixed.memory, in MiB.
func declaredOverheadMiB(tb testing.TB, class string) float64 {
	tb.Helper()
	q := kubectl(tb, "", "get", "runtimeclass", class, "-o", "jsonpath={.overhead.podFixed.memory}")
	for suffix, mib := range map[string]float64{"Mi": 1, "Gi": 1024, "M": 1e6 / (1 << 20), "G": 1e9 / (1 << 20)} {
		if v, err := strconv.ParseFloat(strings.TrimSuffix(q, suffix), 64); err == nil && strings.HasSuffix(q, suffix) {
			return v * mib
		}
	}
	tb.Fatalf("RuntimeClass %s: overhead memory %q", class, q)
	return 0
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// seconds formats the samples.
func seconds(v []float64) string {
	var out []string
	for _, x := range v {
		out = append(out, strconv.FormatFloat(x, 'f', 1, 64))
	}
	return strings.Join(out, ", ")
}
