//go:build e2e

// Command critest runs the CRI conformance suite (cri-tools' critest) against containerd 2.4
// with the Veil runtime handler and then with runc, on one machine, and prints passed, failed
// and skipped for both. It starts everything it needs in a temporary root: a registry on
// loopback with critest's test images rebuilt from Debian's busybox, containerd.toml with the
// `veil` and `runc` handlers, hosts.toml mirrors for the upstream registries critest names
// (registry.k8s.io, k8s.gcr.io, gcr.io, docker.io), and a CNI bridge with portmap.
//
// It exits 0 when both suites ran (whatever their failures: it is a conformance report) and
// non-zero when it could not run them. scripts/critest.sh builds critest and runs this.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/veil-runtime/veil/tests/internal/busyboximage"
	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

const (
	bridgeName = "veilcrit0"
	subnet     = "10.88.79.0/24"
)

var (
	binDir      = flag.String("bin", "bin", "directory with containerd-shim-veil-v2 (and tools/ with containerd, critest)")
	imageDir    = flag.String("image", "build/image", "Veil guest image directory")
	critestBin  = flag.String("critest", "", "critest binary (default BIN/tools/critest)")
	busyboxRoot = flag.String("busybox", "", "Debian's busybox package unpacked (dpkg -x) here")
	handlers    = flag.String("handlers", "veil,runc", "runtime handlers to run the suite with, in order")
	skip        = flag.String("skip", "", "ginkgo.skip regexp for every run")
	focus       = flag.String("focus", "", "ginkgo.focus regexp for every run")
	parallel    = flag.Int("parallel", 1, "critest -parallel")
	reportDir   = flag.String("report", "", "write each run's full output here (default: the temporary root, removed)")
	keep        = flag.Bool("keep", false, "keep the temporary root")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("critest: ")
	os.Exit(run())
}

type result struct {
	handler                  string
	ran, passed, failed, skp int
	pending                  int
	failures                 []string
	dur                      time.Duration
	log                      string
}

func run() int {
	bin, _ := filepath.Abs(*binDir)
	img, _ := filepath.Abs(*imageDir)
	tools := filepath.Join(bin, "tools")
	if *critestBin == "" {
		*critestBin = filepath.Join(tools, "critest")
	}
	for _, p := range []string{*critestBin, filepath.Join(tools, "containerd"), filepath.Join(tools, "containerd-shim-runc-v2"),
		filepath.Join(bin, "containerd-shim-veil-v2"), "/usr/lib/cni/bridge", "/usr/lib/cni/portmap", filepath.Join(img, "manifest.json")} {
		if _, err := os.Stat(p); err != nil {
			log.Printf("missing %s: %v", p, err)
			return 2
		}
	}
	c, err := containerdenv.New("veil-critest-")
	if err != nil {
		log.Print(err)
		return 2
	}
	c.KillGroup = true
	e := &env{Containerd: c, bin: bin, tools: tools, image: img}
	defer e.stop()
	if err := e.start(*busyboxRoot); err != nil {
		log.Printf("set-up failed: %v", err)
		return 2
	}
	report := *reportDir
	if report == "" {
		report = e.Dir
	}
	_ = os.MkdirAll(report, 0o755)
	var results []result
	for _, h := range strings.Split(*handlers, ",") {
		r, err := e.critest(strings.TrimSpace(h), report)
		if err != nil {
			log.Printf("%s: %v", h, err)
			return 2
		}
		results = append(results, r)
	}
	fmt.Println()
	fmt.Println("==== critest v1.37.0 against containerd 2.4.2 ====")
	for _, r := range results {
		fmt.Printf("%-5s ran %d: %d passed, %d failed, %d skipped (%d pending) in %s; log %s\n",
			r.handler, r.ran, r.passed, r.failed, r.skp, r.pending, r.dur.Round(time.Second), r.log)
	}
	for _, r := range results {
		if len(r.failures) > 0 {
			fmt.Printf("failed with %s:\n", r.handler)
			for _, f := range r.failures {
				fmt.Println("  " + f)
			}
		}
	}
	if len(results) == 2 {
		other := map[string]bool{}
		for _, f := range results[1].failures {
			other[f] = true
		}
		fmt.Printf("failed with %s but not with %s:\n", results[0].handler, results[1].handler)
		for _, f := range results[0].failures {
			if !other[f] {
				fmt.Println("  " + f)
			}
		}
	}
	return 0
}

// env is the registry and containerd of one critest run.
type env struct {
	*containerdenv.Containerd
	bin, tools, image string
	reg               *httptest.Server
	tmp               string // TMPDIR of critest: a shared bind mount (mount propagation tests)
}

func (e *env) start(busyboxRoot string) error {
	reg, host := busyboximage.NewRegistry()
	e.reg = reg
	log.Printf("pushing test images to %s", host)
	if err := pushImages(host, busyboxRoot); err != nil {
		return err
	}
	if err := e.writeConfigs(); err != nil {
		return err
	}
	// critest makes its host-path volumes with os.MkdirTemp: give it a directory that is a
	// shared mount, as mount propagation needs (/ is a private mount here).
	e.tmp = e.Path("tmp")
	if err := os.MkdirAll(e.tmp, 0o1777); err != nil {
		return err
	}
	for _, args := range [][]string{{"--bind", e.tmp, e.tmp}, {"--make-rshared", e.tmp}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("mount %v: %v: %s", args, err, out)
		}
	}
	if err := e.Start(filepath.Join(e.tools, "containerd"), e.bin, nil); err != nil {
		return err
	}
	if !containerdenv.WaitFor(30*time.Second, 200*time.Millisecond, func() bool {
		_, err := os.Stat(e.Socket)
		return err == nil
	}) {
		return fmt.Errorf("containerd did not come up; see %s", e.LogPath)
	}
	log.Printf("containerd up (root %s, log %s)", e.Dir, e.LogPath)
	return nil
}

// writeConfigs writes hosts.toml mirrors of the upstream registries critest names (the test
// registry), the CNI network (bridge and portmap), Veil's config and containerd's config (CRI
// with the veil and runc handlers, NRI on).
func (e *env) writeConfigs() error {
	certs := e.Path("certs.d")
	for _, upstream := range []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io", "docker.io"} {
		d := filepath.Join(certs, upstream)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		hosts := fmt.Sprintf("server = \"https://%s\"\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream, e.reg.URL)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return err
		}
	}
	cniDir := e.Path("cni")
	network := containerdenv.Bridge{Name: "veil-critest", Bridge: bridgeName, Subnet: subnet, IPAMDir: e.Path("ipam"),
		IPMasq: true, PortMap: true}
	if err := network.Write(cniDir, "10-veil-critest.conflist"); err != nil {
		return err
	}
	if err := containerdenv.WriteVeilConfig(e.Path("veil.toml"), e.image); err != nil {
		return err
	}
	return e.WriteConfig(e.CRIConfig(containerdenv.CRIConfig{
		Sandbox:        "registry.k8s.io/pause:3.10",
		RegistryConfig: certs,
		VeilConfig:     e.Path("veil.toml"),
		CNIConfDir:     cniDir,
		PodAnnotations: []string{"io.veil.config.*"},
		NRISocket:      e.Path("nri.sock"),
	}))
}

var (
	summaryRe = regexp.MustCompile(`Ran (\d+) of \d+ Specs in`)
	countsRe  = regexp.MustCompile(`(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped`)
	failRe    = regexp.MustCompile(`^\s*\[(FAIL|PANICKED|TIMEDOUT)\] (.*)$`)
	ansiRe    = regexp.MustCompile("\x1b\\[[0-9;]*m")
)

// critest runs the suite with handler ("runc" runs with containerd's default handler) and
// parses ginkgo's summary.
func (e *env) critest(handler, report string) (result, error) {
	r := result{handler: handler, log: filepath.Join(report, "critest-"+handler+".log")}
	args := []string{"--runtime-endpoint", "unix://" + e.Socket, "--image-endpoint", "unix://" + e.Socket,
		"--ginkgo.no-color", "--ginkgo.timeout", "40m", "--nri-socket", e.Path("nri.sock")}
	if *parallel > 1 {
		args = append(args, "--parallel", fmt.Sprint(*parallel))
	}
	if handler != "runc" {
		args = append(args, "--runtime-handler", handler)
	}
	if *skip != "" {
		args = append(args, "--ginkgo.skip", *skip)
	}
	if *focus != "" {
		args = append(args, "--ginkgo.focus", *focus)
	}
	logf, err := os.Create(r.log)
	if err != nil {
		return r, err
	}
	defer logf.Close()
	log.Printf("running critest with handler %s (output in %s)", handler, r.log)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, *critestBin, args...)
	cmd.Dir = e.Dir
	cmd.Env = append(os.Environ(), "TMPDIR="+e.tmp, "PATH="+e.tools+":"+os.Getenv("PATH"))
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		inSummary := false
		for sc.Scan() {
			line := ansiRe.ReplaceAllString(sc.Text(), "")
			fmt.Fprintln(logf, line)
			if strings.Contains(line, "Summarizing") && strings.Contains(line, "Failure") {
				inSummary = true
			}
			if inSummary {
				if m := failRe.FindStringSubmatch(line); m != nil {
					r.failures = append(r.failures, strings.TrimSpace(m[2]))
				}
			}
			if m := summaryRe.FindStringSubmatch(line); m != nil {
				fmt.Sscan(m[1], &r.ran)
			}
			if m := countsRe.FindStringSubmatch(line); m != nil {
				fmt.Sscan(m[1], &r.passed)
				fmt.Sscan(m[2], &r.failed)
				fmt.Sscan(m[3], &r.pending)
				fmt.Sscan(m[4], &r.skp)
			}
			// Progress on the terminal: ginkgo's dots (• passed, S skipped, F failed).
			if strings.HasPrefix(line, "•") || strings.HasPrefix(line, "S") {
				fmt.Print(line[:len(line)-len(strings.TrimLeft(line, "•S"))])
				if strings.Contains(line, "[FAILED]") || strings.Contains(line, "[PANICKED]") {
					fmt.Print("F")
				}
			}
		}
	}()
	werr := cmd.Wait()
	pw.Close()
	<-done
	fmt.Println()
	r.dur = time.Since(start)
	if r.ran == 0 && r.passed+r.failed+r.skp == 0 {
		return r, fmt.Errorf("critest produced no summary (%v); see %s", werr, r.log)
	}
	log.Printf("%s: %d passed, %d failed, %d skipped in %s", handler, r.passed, r.failed, r.skp, r.dur.Round(time.Second))
	return r, nil
}

// stop removes the pods left, stops containerd and the registry, deletes the bridge and the
// temporary root (unless -keep).
func (e *env) stop() {
	if e.Cmd != nil {
		crictl := filepath.Join(e.tools, "crictl")
		ep := "unix://" + e.Socket
		containerdenv.RemovePods(func(args ...string) (string, error) {
			out, err := exec.Command(crictl, append([]string{"--runtime-endpoint", ep}, args...)...).Output()
			return string(out), err
		})
		e.Terminate()
	}
	if e.reg != nil {
		e.reg.Close()
	}
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	if *keep {
		log.Printf("kept %s", e.Dir)
	}
	e.RemoveRoot(*keep)
}
