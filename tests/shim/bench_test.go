//go:build e2e

package shim

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/tests/internal/procmem"
)

const firstOutputSamples = 3

// firstOutput times `ctr run --rm` from its start to the first byte the container prints.
func firstOutput(b *testing.B, runtime, id string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := env.ctrCmd(ctx, "run", "--rm", "--runtime", runtime, env.image, id, "echo", "hi")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := out.Read(buf); err != nil {
		_ = cmd.Wait()
		b.Fatalf("%s: no output: %v\n%s", runtime, err, stderr.String())
	}
	d := time.Since(start)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("%s: ctr run: %v", runtime, err)
	}
	return d
}

// bootToAgentReady times sandbox.Boot of the image the shim boots: QEMU start to the agent
// answering Check, the baseline of issue 14's goal (ctr run to first output ÷ this ≤ 1.2).
func bootToAgentReady(b *testing.B, id string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	sb, err := sandbox.Boot(ctx, sandbox.Options{ID: id, ImageDir: imageDir})
	if err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	sb.Close(context.Background())
	return d
}

// BenchmarkRunToFirstOutput: Veil and runc side by side, and a boot of the same image to
// agent-ready, interleaved, medians of 3; veil÷boot is Veil's run over the boot.
func BenchmarkRunToFirstOutput(b *testing.B) {
	runcOK := true
	if _, err := exec.LookPath("runc"); err != nil {
		runcOK = false
		b.Log("runc not installed (apt-get install runc): reporting Veil only")
	}
	var veil, runc, boot []time.Duration
	for i := 0; i < firstOutputSamples; i++ {
		boot = append(boot, bootToAgentReady(b, fmt.Sprintf("bench-boot-%d-%d", os.Getpid(), i)))
		veil = append(veil, firstOutput(b, runtime, fmt.Sprintf("bench-veil-%d-%d", os.Getpid(), i)))
		if runcOK {
			runc = append(runc, firstOutput(b, "io.containerd.runc.v2", fmt.Sprintf("bench-runc-%d-%d", os.Getpid(), i)))
		}
	}
	b.ReportMetric(median(veil).Seconds(), "veil-s")
	b.ReportMetric(median(boot).Seconds(), "boot-s")
	b.ReportMetric(median(veil).Seconds()/median(boot).Seconds(), "veil÷boot")
	if runcOK {
		b.ReportMetric(median(runc).Seconds(), "runc-s")
	}
}

// BenchmarkFootprint: the shim's RSS and QEMU's (and virtiofsd's) PSS for one busybox pod.
func BenchmarkFootprint(b *testing.B) {
	id := fmt.Sprintf("bench-footprint-%d", os.Getpid())
	mustCtr(b, 2*time.Minute, append(runArgs("-d"), env.image, id, "sleep", "1000")...)
	defer removeContainer(b, id)
	time.Sleep(2 * time.Second) // let the guest settle
	shims, qemus := shimPIDs(id), qemuPIDs(vmOf(id))
	if len(shims) != 1 || len(qemus) != 1 {
		b.Fatalf("shims %v, QEMUs %v: want one of each", shims, qemus)
	}
	b.ReportMetric(procKiB(b, shims[0], "status", "VmRSS:")/1024, "shim-RSS-MiB")
	b.ReportMetric(procKiB(b, shims[0], "status", "RssAnon:")/1024, "shim-anon-MiB")
	b.ReportMetric(procKiB(b, shims[0], "status", "RssFile:")/1024, "shim-file-MiB")
	b.ReportMetric(procKiB(b, qemus[0], "smaps_rollup", "Pss:")/1024, "qemu-PSS-MiB")
	// What holds QEMU's PSS: the guest's RAM it touched, TCG's translation cache, the rest.
	split, err := procmem.SplitQEMUProcess(qemus[0])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(split.GuestRAM)/1024, "qemu-guest-RAM-MiB")
	b.ReportMetric(float64(split.TCGCache)/1024, "qemu-TCG-cache-MiB")
	b.ReportMetric(float64(split.Other)/1024, "qemu-other-MiB")
	var fsd float64
	for _, pid := range procsMatching("virtiofsd", vmOf(id)) {
		fsd += procKiB(b, pid, "smaps_rollup", "Pss:")
	}
	b.ReportMetric(fsd/1024, "virtiofsd-PSS-MiB")
}

// procKiB reads a "Key: N kB" line of /proc/<pid>/<file>.
func procKiB(b testing.TB, pid int, file, key string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == key {
			v, _ := strconv.ParseFloat(fields[1], 64)
			return v
		}
	}
	b.Fatalf("no %s in /proc/%d/%s", key, pid, file)
	return 0
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
