//go:build e2e

package cri

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/kbs-client/keyprovider/keyprovidertest"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

// The guest-pull benchmark's image: busybox and benchLayers layers of benchLayerMiB of random
// bytes each (gzip cannot shrink them).
const (
	benchLayers   = 3
	benchLayerMiB = 40
)

const benchPullYAML = `apiVersion: v1
kind: Pod
metadata:
  name: bench-pull
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: big
    image: %s
    command: ["sh", "-c", "echo bench-pull-ok; cat /proc/meminfo; echo meminfo-done; exec sleep 3600"]
`

// BenchmarkGuestPull: the host's `skopeo copy docker://… dir:…` of a 120 MiB image (a), and
// the guest's pull, decryption and unpacking of the same image encrypted (b), in one run,
// both from the gateway registry (a reverse proxy to the in-process registry, on the host).
// (b) is CreateContainer + StartContainer of a container of the image in a running sim-TEE pod
// of the veil-pull handler, to the container's first output: the guest attests to the KBS for
// the image's KEK, fetches, decrypts, gunzips and unpacks every layer into its image cache
// (the encrypted scratch disk), then starts the container. skopeo only downloads the (plain) blobs and checks
// their digests. It reports both times, their ratio, the QEMU process's RSS before the
// container and its peak during (b), sampled every 50 ms (an upper bound of the guest memory
// touched: guest pages stay resident once touched, and TCG's translation cache counts too),
// and the guest's MemTotal−MemAvailable once the container runs (the container prints its
// /proc/meminfo).
func BenchmarkGuestPull(b *testing.B) {
	skopeo, err := keyprovidertest.Binary()
	if err != nil {
		b.Fatal(err)
	}
	_, gw, kbs, _ := simPullPod(b, 1024)

	plainRef := env.registryHost + "/veil-test/bench-pull-plain:v1"
	size := pushRandomImage(b, plainRef)
	encrypter(b, "--kek-dir", b.TempDir(), "--kbs", fmt.Sprintf("http://127.0.0.1:%d", kbs.Port()), "--admin-key", kbs.Env.WriteAdminKey(b)).
		Encrypt(b, "docker://"+plainRef, "docker://"+env.registryHost+"/veil-test/bench-pull:v1", "kbs:///default/key/bench")
	ref := gw + "/veil-test/bench-pull:v1"
	pullFor(b, pullHandler, ref)

	settings := genpolicy.DefaultSettings()
	settings.SandboxImage = env.pause
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n[kbs]\nurl = %q\n", gw, fmt.Sprintf("http://%s:%d", gatewayIP, kbs.Port()))
	res, err := genpolicy.Generate(context.Background(), []byte(fmt.Sprintf(benchPullYAML, env.registryHost+"/veil-test/bench-pull:v1")), genpolicy.Options{
		Resolver: &genpolicy.RegistryResolver{PlainHTTPLoopback: true}, Settings: settings, GuestPull: true, VeilSnapshotter: true,
		ExtraData: map[string]string{initdata.KeyAgent: veilTOML},
	})
	if err != nil {
		b.Fatal(err)
	}
	annotation := res.Workloads[0].Annotation
	cmd := []string{"sh", "-c", "echo bench-pull-ok; cat /proc/meminfo; echo meminfo-done; exec sleep 3600"}

	var skopeoS, guestS, rssBefore, rssPeak, guestUsed []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// (a) The host's skopeo copy of the plain image to a directory.
		dir := filepath.Join(b.TempDir(), "copy")
		start := time.Now()
		if out, err := exec.Command(skopeo, "copy", "--insecure-policy", "--src-tls-verify=false",
			"docker://"+gw+"/veil-test/bench-pull-plain:v1", "dir:"+dir).CombinedOutput(); err != nil {
			b.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		skopeoS = append(skopeoS, time.Since(start).Seconds())
		if got := dirBytes(b, dir); got < size {
			b.Fatalf("skopeo copied %d bytes, the image has %d", got, size)
		}

		// (b) The guest's pull of the encrypted image, in a pod already running.
		podCfg := podConfig(b, "bench-pull", map[string]string{initdata.Annotation: annotation})
		podID := crictl(b, "runp", "--runtime", pullHandler, podCfg)
		qemus := qemuOf(podID)
		if len(qemus) != 1 {
			b.Fatalf("pod %s: QEMU processes %v, want one", podID, qemus)
		}
		rssBefore = append(rssBefore, vmRSSMiB(qemus[0]))
		stop := sampleRSS(qemus[0], 50*time.Millisecond)
		start = time.Now()
		cid := crictl(b, "create", podID, userImage(b, policyContainerConfig(b, "big", 0, ref, nil, cmd), ref), podCfg)
		if out, errOut, err := env.crictl(10*time.Minute, "start", cid); err != nil {
			stop()
			b.Fatalf("crictl start: %v\n%s%s", err, out, errOut)
		}
		waitLog(b, cid, "bench-pull-ok")
		guestS = append(guestS, time.Since(start).Seconds())
		rssPeak = append(rssPeak, stop())
		guestUsed = append(guestUsed, guestUsedMiB(b, cid))
		crictl(b, "stopp", podID)
		crictl(b, "rmp", podID)
	}
	b.StopTimer()
	b.ReportMetric(float64(size)/(1<<20), "image-MiB")
	b.ReportMetric(median(skopeoS), "skopeo-s")
	b.ReportMetric(median(guestS), "guest-pull-s")
	b.ReportMetric(median(guestS)/median(skopeoS), "guest/skopeo")
	b.ReportMetric(median(rssBefore), "qemu-RSS-before-MiB")
	b.ReportMetric(median(rssPeak), "qemu-RSS-peak-MiB")
	b.ReportMetric(median(guestUsed), "guest-used-after-MiB")
}

// pushRandomImage pushes busybox and benchLayers layers of random bytes to ref and returns
// the total of its compressed layers' sizes.
func pushRandomImage(tb testing.TB, ref string) int64 {
	tb.Helper()
	base, err := busyboximage.Static()
	if err != nil {
		tb.Fatal(err)
	}
	layers := []v1.Layer{base}
	for i := 0; i < benchLayers; i++ {
		l, err := busyboximage.RandomFileLayer(fmt.Sprintf("data-%d.bin", i), int64(benchLayerMiB)<<20)
		if err != nil {
			tb.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := busyboximage.Image(busyboximage.Shell(), layers...)
	if err != nil {
		tb.Fatal(err)
	}
	if err := busyboximage.Push(ref, img); err != nil {
		tb.Fatal(err)
	}
	var total int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			tb.Fatal(err)
		}
		total += n
	}
	return total
}

// dirBytes is the total size of the files in dir.
func dirBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var total int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			total += info.Size()
		}
	}
	return total
}

// vmRSSMiB is the VmRSS of process pid in MiB (0 once it is gone).
func vmRSSMiB(pid string) float64 {
	f, err := os.Open(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) >= 2 && fields[0] == "VmRSS:" {
			kib, _ := strconv.ParseFloat(fields[1], 64)
			return kib / 1024
		}
	}
	return 0
}

// sampleRSS samples pid's VmRSS every interval until the returned function is called, which
// returns the largest sample.
func sampleRSS(pid string, interval time.Duration) func() float64 {
	var (
		mu   sync.Mutex
		peak = vmRSSMiB(pid)
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				v := vmRSSMiB(pid)
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
		}
	}()
	return func() float64 {
		close(done)
		wg.Wait()
		v := vmRSSMiB(pid)
		mu.Lock()
		defer mu.Unlock()
		return max(peak, v)
	}
}

// guestUsedMiB is MemTotal − MemAvailable of the guest, from the /proc/meminfo container cid
// prints when it starts (the policy allows no exec).
func guestUsedMiB(tb testing.TB, cid string) float64 {
	tb.Helper()
	kib := map[string]float64{}
	for _, line := range strings.Split(waitLog(tb, cid, "meminfo-done"), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 {
			kib[strings.TrimSuffix(fields[0], ":")], _ = strconv.ParseFloat(fields[1], 64)
		}
	}
	if kib["MemTotal"] == 0 || kib["MemAvailable"] == 0 {
		tb.Fatalf("container %s: /proc/meminfo without MemTotal or MemAvailable", cid)
	}
	return (kib["MemTotal"] - kib["MemAvailable"]) / 1024
}

// median of xs (not empty).
func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkConfidentialStart: a confidential pod's start against a plain pod's start of the
// same small image (busybox and a one-file layer, ~1 MiB: the figure is about the
// confidential machinery, not the transfer), in one run, VEIL_CRI_BENCH_SAMPLES rounds
// (default 3), the two taking turns. Each start is PullImage + RunPodSandbox +
// CreateContainer + StartContainer to the container's first output, with the image removed
// from containerd before, as a node that has not seen it:
//   - plain: the plain image under the veil handler: containerd pulls and unpacks it on the
//     host, the guest gets the root over virtio-fs; DB_PASSWORD in plaintext.
//   - confidential: the image encrypted and signed (prepareConfidential), a sealed
//     DB_PASSWORD, a sim-TEE pod of the veil-pull handler with veil-snapshotter: containerd
//     fetches manifest and config only; the guest attests, pulls, verifies the signature,
//     decrypts, unpacks and unseals.
//
// It reports the medians of both, their ratio (the goal: 1.5 or less), and the
// medians of the phases (pull, runp, create+start to the first output).
func BenchmarkConfidentialStart(b *testing.B) {
	_, gw, kbs, _ := simPullPod(b, 0)
	c := prepareConfidential(b, gw, kbs, "bench-conf")
	samples := 3
	if v, err := strconv.Atoi(os.Getenv("VEIL_CRI_BENCH_SAMPLES")); err == nil && v > 0 {
		samples = v
	}
	plainEnvs := []map[string]string{{"key": "DB_PASSWORD", "value": confidentialSecret}}
	want := "DB_PASSWORD=" + confidentialSecret
	phases := map[string][]float64{}
	run := func(kind, runtimeHandler, ref, podName string, annotations map[string]string, envs []map[string]string) {
		if out, errOut, err := env.crictl(time.Minute, "rmi", ref); err != nil && !strings.Contains(out+errOut, "not found") && !strings.Contains(out+errOut, "no such image") {
			b.Logf("crictl rmi %s: %v %s%s", ref, err, out, errOut)
		}
		start := time.Now()
		pullFor(b, runtimeHandler, ref)
		pulled := time.Now()
		podCfg := podConfig(b, podName, annotations)
		podID := crictl(b, "runp", "--runtime", runtimeHandler, podCfg)
		ran := time.Now()
		cid := crictl(b, "create", podID, userImage(b, policyContainerConfig(b, "app", 0, ref, envs, confidentialCmd), ref), podCfg)
		crictl(b, "start", cid)
		out := waitLog(b, cid, "confidential-done")
		end := time.Now()
		if !strings.Contains(out, want) {
			b.Fatalf("%s: the container's output lacks %q:\n%s", kind, want, out)
		}
		phases[kind+"-s"] = append(phases[kind+"-s"], end.Sub(start).Seconds())
		phases[kind+"-pull-s"] = append(phases[kind+"-pull-s"], pulled.Sub(start).Seconds())
		phases[kind+"-runp-s"] = append(phases[kind+"-runp-s"], ran.Sub(pulled).Seconds())
		phases[kind+"-run-s"] = append(phases[kind+"-run-s"], end.Sub(ran).Seconds())
		crictl(b, "stopp", podID)
		crictl(b, "rmp", podID)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for s := 0; s < samples; s++ {
			run("plain", handler, c.plain, fmt.Sprintf("bench-plain-%d-%d", i, s), nil, plainEnvs)
			// The policy names the pod "confidential" (confidentialPodYAML).
			run("conf", pullHandler, c.ref, "confidential", map[string]string{initdata.Annotation: c.annotation}, c.envs())
		}
	}
	b.StopTimer()
	for _, k := range []string{"plain-s", "conf-s", "plain-pull-s", "conf-pull-s", "plain-runp-s", "conf-runp-s", "plain-run-s", "conf-run-s"} {
		b.ReportMetric(median(phases[k]), k)
	}
	b.ReportMetric(median(phases["conf-s"])/median(phases["plain-s"]), "conf/plain")
}
