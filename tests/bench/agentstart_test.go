//go:build e2e

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/container"
	"github.com/veil-runtime/veil/agent/startup"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/shim/ctl"
	"github.com/veil-runtime/veil/shim/sandbox"
)

const (
	agentStartSamples = 5
	execSamples       = 10
)

// startLine waits for the agent's start line (package startup) on sb's console and returns
// its steps, in ms since init executed the agent.
func startLine(b *testing.B, sb *sandbox.Sandbox) map[string]float64 {
	b.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(sb.VM.ConsoleLog())
		var steps map[string]float64
		if steps, err = startup.Parse(string(data)); err == nil {
			return steps
		}
	}
	b.Fatalf("agent start line: %v\n%s", err, sandbox.ConsoleTail(sb.VM.ConsoleLog(), 40))
	return nil
}

// BenchmarkAgentStart splits boot to agent-ready: boots of the image (no initdata: the
// allow-all policy), each timed on the host, and the agent's own steps from its console line:
// main (the Go runtime and every package initialiser), policy (initdata read, checked and the
// policy compiled), serving, first-request (the host's first Check answered under the policy).
// The goal of issue 14 is first-request ÷ boot ≤ 0.05.
func BenchmarkAgentStart(b *testing.B) {
	dir := imageDir(b)
	steps := map[string][]float64{}
	var boots, ratios []float64
	for i := 0; i < agentStartSamples; i++ {
		id := fmt.Sprintf("bench-start-%d-%d", os.Getpid(), i)
		c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		start := time.Now()
		sb, err := sandbox.Boot(c, sandbox.Options{ID: id, ImageDir: dir})
		boot := time.Since(start)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		st := startLine(b, sb)
		sb.Close(context.Background())
		for k, v := range st {
			steps[k] = append(steps[k], v)
		}
		boots = append(boots, boot.Seconds())
		ratios = append(ratios, st["first-request"]/1e3/boot.Seconds())
		b.Logf("boot %d: %.2f s; agent %v", i, boot.Seconds(), st)
	}
	b.ReportMetric(medianF(boots), "boot-s")
	for _, k := range []string{"main", "policy", "prepared", "serving", "first-request"} {
		if len(steps[k]) == agentStartSamples {
			b.ReportMetric(medianF(steps[k]), "agent-"+k+"-ms")
		}
	}
	b.ReportMetric(medianF(ratios), "agent÷boot")
}

// BenchmarkExec breaks an exec down, in one VM booted with the agent at debug level: the
// ExecProcess round trip of `true` (libcontainer's start of the process is most of it),
// libcontainer's part in the guest (the agent's debug line), the policy's (its decision log),
// and how long a static Go program and the agent binary itself (--version) take to run in the
// guest beside `true`: the agent's runtime and package initialisers are what libcontainer's
// re-exec of it as each container process's init pays. It also says which way libcontainer
// sealed /proc/self/exe in the guest (overlayfs or a memfd copy).
func BenchmarkExec(b *testing.B) {
	rootfs := filepath.Join(b.TempDir(), "rootfs")
	if err := busyboxRootFS(rootfs); err != nil {
		b.Fatal(err)
	}
	hello := filepath.Join(rootfs, "bin/gohello")
	cmd := exec.Command("go", "build", "-o", hello, "./gohello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build gohello: %v\n%s", err, out)
	}
	programs := [][]string{{"/bin/true"}, {"/bin/gohello"}}
	if bin := os.Getenv("VEIL_BIN"); bin != "" {
		data, err := os.ReadFile(filepath.Join(bin, "veil-agent"))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, "bin/veil-agent"), data, 0o755); err != nil {
			b.Fatal(err)
		}
		programs = append(programs, []string{"/bin/veil-agent", "--version"})
	} else {
		b.Log("VEIL_BIN not set: the agent binary's own start is not measured")
	}

	c, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	id := fmt.Sprintf("bench-exec-%d", os.Getpid())
	sb, err := sandbox.Boot(c, sandbox.Options{ID: id, ImageDir: imageDir(b), KernelParams: []string{"veil.log_level=debug"},
		SharedDirs: []hypervisor.SharedDir{{Tag: "rootfs", HostPath: rootfs}}})
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Close(context.Background())
	fail := func(format string, args ...any) {
		b.Helper()
		b.Logf("guest console:\n%s", sandbox.ConsoleTail(sb.VM.ConsoleLog(), 40))
		b.Fatalf(format, args...)
	}
	if _, err := sb.Agent.CreateSandbox(c, &api.CreateSandboxRequest{SandboxId: id, Hostname: "bench"}); err != nil {
		fail("CreateSandbox: %v", err)
	}
	mnt := api.StorageDir + "/c/rootfs"
	spec, err := ctl.Spec(ctl.SpecOptions{Args: []string{"sleep", "1000"}, RootPath: mnt})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sb.Agent.CreateContainer(c, &api.CreateContainerRequest{ContainerId: "c", OciSpec: spec,
		Storages: []*api.Storage{{Driver: "virtiofs", Source: "rootfs", MountPoint: mnt}}}); err != nil {
		fail("CreateContainer: %v", err)
	}
	if _, err := sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: "c"}); err != nil {
		fail("StartContainer: %v", err)
	}

	execRT := map[string][]time.Duration{}  // ExecProcess round trip
	totalRT := map[string][]time.Duration{} // ExecProcess to WaitProcess's answer
	// Interleaved and rotated, so that load drifts and what one exec leaves behind hit every
	// program alike.
	for i := 0; i < execSamples; i++ {
		for k := range programs {
			args := programs[(i+k)%len(programs)]
			execID := fmt.Sprintf("%s-%d", filepath.Base(args[0]), i)
			start := time.Now()
			if _, err := sb.Agent.ExecProcess(c, &api.ExecProcessRequest{ContainerId: "c", ExecId: execID,
				Process: &api.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}}}); err != nil {
				fail("ExecProcess %v: %v", args, err)
			}
			started := time.Since(start)
			w, err := sb.Agent.WaitProcess(c, &api.WaitProcessRequest{ContainerId: "c", ExecId: execID})
			if err != nil || w.GetStatus() != 0 {
				fail("WaitProcess %v: %v, status %d", args, err, w.GetStatus())
			}
			execRT[args[0]] = append(execRT[args[0]], started)
			totalRT[args[0]] = append(totalRT[args[0]], time.Since(start))
		}
	}
	b.ReportMetric(ms(pct(execRT["/bin/true"], 50)), "exec-rt-p50-ms")
	b.ReportMetric(ms(pct(totalRT["/bin/true"], 50)), "exec-to-exit-p50-ms")
	floor := pct(totalRT["/bin/true"], 50)
	b.ReportMetric(ms(pct(totalRT["/bin/gohello"], 50)-floor), "gohello-run-ms")
	if rt, ok := totalRT["/bin/veil-agent"]; ok {
		b.ReportMetric(ms(pct(rt, 50)-floor), "agent-binary-run-ms")
	}

	console, _ := os.ReadFile(sb.VM.ConsoleLog())
	if lc := libcontainerTimes(string(console), "true-"); len(lc) > 0 {
		b.ReportMetric(medianF(lc), "exec-libcontainer-p50-ms")
	} else {
		fail("no %q lines for the execs of true on the console", container.LibcontainerStartLine)
	}
	overlay := strings.Count(string(console), "runc exeseal: using overlayfs for sealed /proc/self/exe")
	memfd := strings.Count(string(console), "falling back to making a temporary copy")
	b.Logf("libcontainer sealed /proc/self/exe with overlayfs %d times, with a memfd copy %d times", overlay, memfd)
	b.ReportMetric(float64(overlay), "exeseal-overlayfs")
	b.ReportMetric(float64(memfd), "exeseal-memfd")
	r, err := sb.Agent.ReadDecisionLog(c, &api.ReadDecisionLogRequest{})
	if err != nil {
		fail("ReadDecisionLog: %v", err)
	}
	var pol []float64
	for _, line := range bytes.Split(bytes.TrimSuffix(r.GetData(), []byte("\n")), []byte("\n")) {
		var e policy.LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			b.Fatalf("decision log line %q: %v", line, err)
		}
		if e.Method == "ExecProcess" && e.ContainerID == "c" {
			pol = append(pol, float64(e.DurationNS)/1e6)
		}
	}
	if len(pol) > 0 {
		b.ReportMetric(medianF(pol), "exec-policy-p50-ms")
	}
}

// libcontainerTimes reads the agent's debug lines of libcontainer's start of the execs whose
// id starts with prefix, in ms.
func libcontainerTimes(console, prefix string) []float64 {
	re := regexp.MustCompile(regexp.QuoteMeta(container.LibcontainerStartLine) + ` ([0-9.]+) ms[^\n]*exec="?` + regexp.QuoteMeta(prefix))
	var out []float64
	for _, m := range re.FindAllStringSubmatch(console, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		out = append(out, v)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

func medianF(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
