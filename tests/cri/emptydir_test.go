//go:build e2e

package cri

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/shim/pod"
)

// emptyDirPodYAML: writer writes a marker into a disk emptyDir and another into a memory
// emptyDir; reader prints both.
const emptyDirPodYAML = `apiVersion: v1
kind: Pod
metadata:
  name: emptydir
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  containers:
  - name: writer
    image: %[1]s
    command: %[2]s
    volumeMounts:
    - {name: cache, mountPath: /cache}
    - {name: mem, mountPath: /mem}
  - name: reader
    image: %[1]s
    command: %[3]s
    volumeMounts:
    - {name: cache, mountPath: /cache}
    - {name: mem, mountPath: /mem}
  volumes:
  - {name: cache, emptyDir: {}}
  - {name: mem, emptyDir: {medium: Memory}}
`

// TestEmptyDir runs a sim-TEE guest-pull pod (veil-pull handler, with a 1 GiB scratch disk)
// whose two containers mount the same two emptyDir volumes, which the host made as kubelet
// does (a directory, and a tmpfs for medium Memory): in the guest they are the scratch disk's
// ext2 and a tmpfs; what the writer writes, the reader reads,
// while the host's directories stay empty and neither the pod directory nor the scratch
// disk's file holds the plaintext. A host that passes the volume as a directory of its own
// (a path not in kubelet's form, which the shim shares) is refused by the policy.
func TestEmptyDir(t *testing.T) {
	_, gw, kbs, _ := simPullPod(t, 0)
	scratchDir := simPullScratch(t, 1024)
	// The markers are made in the guest from numbers the command gives in hex, so that the
	// policy (in the initdata the host holds) does not spell them.
	diskN, memN := randomUint32(t), randomUint32(t)
	diskMark, memMark := fmt.Sprintf("disk-%d-mark", diskN), fmt.Sprintf("mem-%d-mark", memN)
	writerCmd := []string{"sh", "-c", fmt.Sprintf("printf 'disk-%%d-mark\\n' %#x > /cache/f && printf 'mem-%%d-mark\\n' %#x > /mem/f && "+
		"sync && echo fs=$(stat -f -c %%t /cache)/$(stat -f -c %%t /mem) && echo written; exec sleep 3600", diskN, memN)}
	readerCmd := []string{"sh", "-c", "echo got=$(cat /cache/f)/$(cat /mem/f); echo read-done; exec sleep 3600"}

	busybox := gw + "/veil-test/busybox:latest"
	crictl(t, "pull", busybox)
	kbsURL := fmt.Sprintf("http://%s:%d", gatewayIP, kbs.Port())
	veilTOML := fmt.Sprintf("[image]\ninsecure_registries = [%q]\n[kbs]\nurl = %q\n", gw, kbsURL)
	yaml := fmt.Sprintf(emptyDirPodYAML, env.registryHost+"/veil-test/busybox:latest", jsonList(writerCmd), jsonList(readerCmd))
	podID, podCfg := runGenpolicyPod(t, "emptydir", yaml, veilTOML, false)
	vm := pod.VMID(criNamespace, podID)

	// The volumes as kubelet makes them (podConfig's uid is "emptydir-uid").
	volumes := filepath.Join(t.TempDir(), "pods", "emptydir-uid", "volumes", api.KubeletEmptyDir)
	cacheDir, memDir := filepath.Join(volumes, "cache"), filepath.Join(volumes, "mem")
	for _, d := range []string{cacheDir, memDir} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", memDir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(memDir, unix.MNT_DETACH) })

	config := func(name string, attempt int, cmd []string, cache string) string {
		p := userImage(t, policyContainerConfig(t, name, attempt, busybox, nil, cmd), busybox)
		return editConfig(t, p, func(c map[string]any) {
			c["mounts"] = append(c["mounts"].([]any),
				map[string]any{"container_path": "/cache", "host_path": cache},
				map[string]any{"container_path": "/mem", "host_path": memDir})
		})
	}
	writer := crictl(t, "create", podID, config("writer", 0, writerCmd, cacheDir), podCfg)
	crictl(t, "start", writer)
	// The disk volume is on the scratch disk's ext2 (magic ef53), the memory one a tmpfs
	// (01021994), not in the guest's root file system.
	if out := waitLog(t, writer, "written"); !strings.Contains(out, "fs=ef53/1021994") {
		t.Fatalf("the writer's volumes are not on ext2 and tmpfs (fs=<magic of /cache>/<magic of /mem>):\n%s", out)
	}
	reader := crictl(t, "create", podID, config("reader", 0, readerCmd, cacheDir), podCfg)
	crictl(t, "start", reader)
	if out := waitLog(t, reader, "read-done"); !strings.Contains(out, "got="+diskMark+"/"+memMark) {
		t.Fatalf("the reader does not see the writer's files in the volumes:\n%s", out)
	}
	t.Logf("the reader sees what the writer wrote in both emptyDir volumes")

	// The host's side: its volume directories are empty, its pod directory and the scratch
	// disk's file hold neither marker (the scratch file was written: it holds the ciphertext).
	for _, d := range []string{cacheDir, memDir} {
		if ents, err := os.ReadDir(d); err != nil || len(ents) != 0 {
			t.Errorf("the host's %s: %v, %v; want it empty", d, ents, err)
		}
	}
	checkNoPlaintext(t, pod.DirOf(vm), diskMark, memMark)
	scratch := filepath.Join(scratchDir, vm+".img")
	if found, allocated := sparseFileHolds(t, scratch, diskMark, memMark); len(found) != 0 || allocated == 0 {
		t.Errorf("the scratch disk file %s (%d KiB written) holds %q in the clear", scratch, allocated>>10, found)
	} else {
		t.Logf("the scratch disk file: %d KiB written, no marker in the clear", allocated>>10)
	}

	// The host passes /cache as a directory of its own, pre-seeded: the shim shares it (it is
	// not kubelet's emptyDir path), and the policy refuses the container.
	seeded := filepath.Join(t.TempDir(), "cache")
	if err := os.MkdirAll(seeded, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seeded, "f"), []byte("host-seeded\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	shared := crictl(t, "create", podID, config("reader", 1, readerCmd, seeded), podCfg)
	_, errOut, err := env.crictl(2*time.Minute, "start", shared)
	if err == nil {
		t.Fatal("a container whose emptyDir the host shared from a directory of its own started")
	}
	if !strings.Contains(errOut, "mount at") || !strings.Contains(errOut, "/cache") || !strings.Contains(errOut, "is not allowed") {
		t.Fatalf("host-shared emptyDir: want the policy's refusal of the mount at /cache, got %q", errOut)
	}
	t.Logf("host-shared emptyDir refused: %s", lineWith(errOut, "/cache"))
	crictl(t, "rm", "-f", shared)

	crictl(t, "stopp", podID)
	crictl(t, "rmp", podID)
	checkGone(t, podID, vm)
	if left, _ := filepath.Glob(filepath.Join(scratchDir, "*")); len(left) != 0 {
		t.Errorf("scratch files left after the pod: %v", left)
	}
}

// simPullScratch gives the veil-pull handler's VMs a scratch disk of mib MiB in a directory
// of the test's (returned), until the test ends.
func simPullScratch(t *testing.T, mib int) string {
	t.Helper()
	dir := t.TempDir()
	path := env.Path(pullConfigName)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	scratch := fmt.Sprintf("scratch_disk_mib = %d\nscratch_dir = %q\n[runtime]\n", mib, dir)
	cfg := strings.Replace(string(old), "[runtime]\n", scratch, 1)
	if cfg == string(old) {
		t.Fatalf("%s has no [runtime] table to put the scratch settings before:\n%s", path, old)
	}
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(path, old, 0o644) })
	return dir
}

// sparseFileHolds reads the data regions of the sparse file at path (SEEK_DATA/SEEK_HOLE)
// and returns the needles found in them and how many bytes they hold.
func sparseFileHolds(t *testing.T, path string, needles ...string) (found []string, allocated int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var data bytes.Buffer
	for off := int64(0); ; {
		start, err := f.Seek(off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data past off
		}
		end, err := f.Seek(start, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(&data, f, end-start); err != nil {
			t.Fatal(err)
		}
		data.WriteString("\x00") // no match across regions
		allocated += end - start
		off = end
	}
	for _, n := range needles {
		if bytes.Contains(data.Bytes(), []byte(n)) {
			found = append(found, n)
		}
	}
	return found, allocated
}

func randomUint32(t *testing.T) uint32 {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(b)
}

// jsonList writes args as a YAML flow list.
func jsonList(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fmt.Sprintf("%q", a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
