//go:build e2e

package e2e

// The encrypted scratch disk (agent/scratch, docs/scratch.md): a sim-TEE VM that guest-pulls
// its image keeps the image cache and the containers' writable layers on a virtio-blk disk
// the host backs with a sparse file, encrypted in the guest under a key of the boot. The host
// reads that file and must find none of what the guest wrote; a second boot on the same file
// must not see the first boot's data.

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/sandbox"
	"github.com/veil-runtime/veil/tests/internal/busyboximage"
)

// withScratch attaches the file at path as the VM's scratch disk.
func withScratch(path string) func(*sandbox.Options) {
	return func(o *sandbox.Options) { o.ScratchDisk = path }
}

// rootProcess is a process of uid 0 in a guest-pulled busybox container.
func rootProcess(args ...string) *api.Process {
	return &api.Process{Args: args, Cwd: "/", Env: []string{busyboximage.Path}, Capabilities: hostileCaps}
}

// consoleHas reports whether the VM's console log holds s.
func consoleHas(t *testing.T, e *hostileEnv, s string) bool {
	t.Helper()
	b, err := os.ReadFile(e.sb.VM.ConsoleLog())
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(s))
}

// fileHolds reports whether the file at path holds any of the needles, reading it in chunks
// (the file is as large as the disk, mostly holes).
func fileHolds(t *testing.T, path string, needles ...[]byte) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	longest := 0
	for _, n := range needles {
		longest = max(longest, len(n))
	}
	var found []string
	buf := make([]byte, 4<<20+longest)
	carry := 0
	for {
		n, err := f.Read(buf[carry : carry+4<<20])
		chunk := buf[:carry+n]
		for _, nd := range needles {
			if bytes.Contains(chunk, nd) && !contains(found, string(nd)) {
				found = append(found, string(nd))
			}
		}
		if err != nil {
			break
		}
		carry = copy(buf, chunk[len(chunk)-min(len(chunk), longest):])
	}
	return found
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// allocated is how many bytes of the file at path the host's file system holds.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestScratchEncrypted: what a guest-pulled container writes, and the image it runs, reach the
// host's scratch file only as ciphertext; a reboot on the same file (a new key) cannot read
// the first boot's data and makes a fresh file system.
func TestScratchEncrypted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scratch.img")
	if err := sandbox.CreateScratchDisk(path, 2048); err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	marker := "veil-scratch-secret-" + hex.EncodeToString(nonce)
	// The unpacked image: busybox's version string is in its binary, so in the image cache.
	bbVersion := []byte("BusyBox v1.")
	layer, err := busyboximage.Static()
	if err != nil {
		t.Fatal(err)
	}
	if !layerHolds(t, layer, bbVersion) {
		t.Fatalf("the busybox layer does not hold %q: the check below would prove nothing", bbVersion)
	}

	// First boot: pull, run, write the marker into the container's writable layer.
	e := newHostileEnv(t, polAllowAll, withScratch(path))
	if !consoleHas(t, e, scratchConsole) {
		t.Fatalf("the guest did not set up its scratch disk:\n%s", sandbox.ConsoleTail(e.sb.VM.ConsoleLog(), 40))
	}
	t.Log(scratchLine(t, e))
	id := startApp(t, e)
	out, st, err := e.exec(id, e.newID("write"), rootProcess("sh", "-c",
		"echo "+marker+" > /marker && for i in 1 2 3 4 5 6 7 8; do cat /marker; done > /marker8 && sync && cat /marker"))
	if err != nil || st != 0 || strings.TrimSpace(out) != marker {
		t.Fatalf("write the marker: %v, status %d, output %q", err, st, out)
	}
	used := allocated(t, path)
	if used < 1<<20 {
		t.Fatalf("the scratch file holds %d bytes: the guest did not write to its disk", used)
	}
	if found := fileHolds(t, path, []byte(marker), bbVersion); len(found) > 0 {
		t.Fatalf("the host's scratch file holds plaintext the guest wrote: %q", found)
	}
	t.Logf("first boot: %d MiB of the 2048 MiB scratch file written, no plaintext in it", used>>20)
	t.Logf("write throughput on the encrypted scratch disk: %s", ddThroughput(t, e, id))
	// The first VM goes; the file stays.
	if err := e.close(); err != nil {
		t.Fatal(err)
	}

	// Second boot on the same file: a new key, so the old blocks decrypt to noise and the
	// guest makes a new file system. The same container id finds no marker. Had the first
	// boot's file system survived, the agent would refuse this create outright: the
	// container's overlay directory (images/overlays/<id>) would still exist.
	e2 := newHostileEnv(t, polAllowAll, withScratch(path))
	if !consoleHas(t, e2, scratchConsole) {
		t.Fatalf("the second boot did not set up its scratch disk:\n%s", sandbox.ConsoleTail(e2.sb.VM.ConsoleLog(), 40))
	}
	id2 := startApp(t, e2)
	if id2 != id {
		t.Fatalf("the second boot's container is %s, want %s again (its writable layer at the same path)", id2, id)
	}
	out, st, err = e2.exec(id2, e2.newID("read"), rootProcess("sh", "-c",
		"cat /marker 2>&1; grep -rl "+marker+" /run /tmp /marker8 2>/dev/null; echo done"))
	if err != nil || strings.Contains(out, marker) || !strings.Contains(out, "done") {
		t.Fatalf("after a reboot on the same scratch file the guest reads %q (%v, status %d): want the old data gone", out, err, st)
	}
	if found := fileHolds(t, path, []byte(marker), bbVersion); len(found) > 0 {
		t.Fatalf("after the second boot the host's scratch file holds plaintext: %q", found)
	}
}

// startApp creates and starts the honest app container, guest-pulled, and returns its id.
// Unlike victim it is not removed at the end: its VM may be gone by then.
func startApp(t *testing.T, e *hostileEnv) string {
	t.Helper()
	id := e.newID("victim")
	c := hostileCtx(t, 5*time.Minute)
	start := time.Now()
	if _, err := e.sb.Agent.CreateContainer(c, e.honest(t, id, hostileApp).msg()); err != nil {
		t.Fatalf("CreateContainer %s: %v", id, err)
	}
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", id, err)
	}
	if out := e.readUntil(id, "", time.Minute, "app-ok"); !strings.Contains(out, "app-ok") {
		t.Fatalf("the app %s printed %q, want app-ok", id, out)
	}
	t.Logf("app %s pulled and started in %s", id, time.Since(start).Round(time.Millisecond))
	return id
}

// ddThroughput writes 128 MiB into container id's writable layer, synced, and returns the
// rate (the cost of the scratch disk: docs/scratch.md). busybox's dd prints no rate: the
// guest's uptime before and after times it.
func ddThroughput(t *testing.T, e *hostileEnv, id string) string {
	t.Helper()
	out, st, err := e.exec(id, e.newID("dd"), rootProcess("sh", "-c",
		"cut -d' ' -f1 /proc/uptime; dd if=/dev/zero of=/dd.bin bs=1M count=128 conv=fsync 2>/dev/null; cut -d' ' -f1 /proc/uptime; rm /dd.bin"))
	var a, b float64
	if err != nil || st != 0 {
		t.Fatalf("dd: %v, status %d, %q", err, st, out)
	}
	if _, err := fmt.Sscanf(out, "%g\n%g", &a, &b); err != nil || b <= a {
		t.Fatalf("dd's times %q: %v", out, err)
	}
	return fmt.Sprintf("128 MiB in %.2f s, %.1f MiB/s", b-a, 128/(b-a))
}

// layerHolds reports whether the uncompressed layer holds s.
func layerHolds(t *testing.T, layer v1.Layer, s []byte) bool {
	t.Helper()
	rc, err := layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, s)
}

// TestScratchNone: without a scratch disk the guest keeps its data in RAM as before, and says
// so once.
func TestScratchNone(t *testing.T) {
	e := newHostileEnv(t, polAllowAll)
	if !consoleHas(t, e, "no scratch disk") {
		t.Fatalf("the console does not say the data stay in RAM:\n%s", sandbox.ConsoleTail(e.sb.VM.ConsoleLog(), 40))
	}
	id := startApp(t, e)
	out, st, err := e.exec(id, e.newID("w"), rootProcess("sh", "-c", "echo ram > /f && cat /f"))
	if err != nil || st != 0 || strings.TrimSpace(out) != "ram" {
		t.Fatalf("a container without a scratch disk: %v, status %d, %q", err, st, out)
	}
	t.Logf("write throughput in guest RAM: %s", ddThroughput(t, e, id))
}

// bigImageMiB is TestScratchBigImage's layer: larger than the VM's memory (scratchVMMiB).
const (
	bigImageMiB  = 512
	scratchVMMiB = 384
)

// TestScratchBigImage: a VM of 384 MiB pulls and runs an image whose layer unpacks to 512 MiB
// of incompressible data, which RAM could not hold: the unpacked image lives on the scratch
// disk, and the host's file holds none of its plaintext.
func TestScratchBigImage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scratch.img")
	if err := sandbox.CreateScratchDisk(path, 2048); err != nil {
		t.Fatal(err)
	}
	// Random data, with a probe: 64 bytes from its middle, looked for in the host's file. The
	// layer is a plain (uncompressed) tar: random data do not compress, and the guest's gunzip
	// under TCG would only add time.
	var probe []byte
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	size := int64(bigImageMiB) << 20
	if err := tw.WriteHeader(&tar.Header{Name: "big.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := int64(0); i < size>>20; i++ {
		_, _ = rand.Read(chunk)
		if i == size>>21 {
			probe = append([]byte(nil), chunk[4096:4096+64]...)
		}
		if _, err := tw.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	big := static.NewLayer(tarBuf.Bytes(), types.OCIUncompressedLayer)
	e := newHostileEnv(t, polAllowAll, withScratch(path), func(o *sandbox.Options) { o.MemoryMiB = scratchVMMiB })
	base, err := busyboximage.Static()
	if err != nil {
		t.Fatal(err)
	}
	img, err := busyboximage.Image(busyboximage.Shell(), base, big)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := busyboximage.Push(e.regLoop+"/veil-test/big:v1", img); err != nil {
		t.Fatal(err)
	}
	id := e.newID("big")
	r := e.honest(t, id, hostileApp)
	ref := e.regGuest + "/veil-test/big:v1"
	r.spec.Annotations["io.kubernetes.cri.image-name"] = ref
	r.spec.Annotations[api.ImageDigestAnnotation] = d.String()
	r.storages[0].Source = ref
	c := hostileCtx(t, 20*time.Minute)
	start := time.Now()
	if _, err := e.sb.Agent.CreateContainer(c, r.msg()); err != nil {
		t.Fatalf("CreateContainer of a %d MiB image in a %d MiB VM: %v", bigImageMiB, scratchVMMiB, err)
	}
	pulled := time.Since(start)
	if _, err := e.sb.Agent.StartContainer(c, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", id, err)
	}
	out, st, err := e.exec(id, e.newID("size"), rootProcess("sh", "-c", "stat -c %s /big.bin; free -m | grep Mem; sync"))
	if err != nil || st != 0 || !strings.HasPrefix(out, fmt.Sprint(bigImageMiB<<20)+"\n") {
		t.Fatalf("the big file in the container: %v, status %d, %q", err, st, out)
	}
	t.Logf("a %d MiB image pulled, unpacked and started in a %d MiB VM in %s (pull %s); guest memory: %s",
		bigImageMiB, scratchVMMiB, time.Since(start).Round(time.Second), pulled.Round(time.Second), strings.TrimSpace(strings.SplitN(out, "\n", 2)[1]))
	if used := allocated(t, path); used < int64(bigImageMiB)<<20 {
		t.Errorf("the scratch file holds %d MiB, less than the image: was it unpacked elsewhere?", used>>20)
	}
	if found := fileHolds(t, path, probe); len(found) > 0 {
		t.Fatal("the host's scratch file holds the image's plaintext")
	}
}
