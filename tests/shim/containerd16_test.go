//go:build e2e

package shim

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/tests/internal/containerdenv"
)

// TestContainerd16 runs the shim under Debian's containerd 1.6 (task API v2, the address
// printed as plain text by `start`), driven by the ctr of the same package, beside the 2.x
// containerd the other tests use. scripts/containerd16.sh unpacks the package into
// bin/tools/containerd-1.6 (skipped when it is there).
func TestContainerd16(t *testing.T) {
	script := filepath.Join("..", "..", "scripts", "containerd16.sh")
	if out, err := exec.Command(script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	dir := filepath.Join(binDir, "tools", "containerd-1.6")
	e16, err := startContainerdWith(filepath.Join(dir, "containerd"), filepath.Join(dir, "ctr"), 2)
	if err != nil {
		t.Fatalf("containerd 1.6: %v", err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("containerd 1.6 log (last lines):\n%s", containerdenv.Tail(e16.LogPath, 60))
		}
		e16.Stop()
	}()
	if v := ctrOn(t, e16, time.Minute, "version"); !strings.Contains(v.stdout, "1.6.") {
		t.Fatalf("ctr version: %q, want a 1.6 server", v.stdout)
	}
	run := func(extra ...string) []string {
		return append([]string{"run", "--runtime", runtime}, extra...)
	}

	t.Run("echo", func(t *testing.T) {
		id := uniqueID(t, "c16")
		r := ctrOn(t, e16, 2*time.Minute, append(run("--rm"), e16.image, id, "echo", "hi")...)
		if r.code != 0 || r.stdout != "hi\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and \"hi\\n\"", r.code, r.stdout, r.stderr)
		}
		t.Logf("containerd 1.6: ctr run --rm echo hi took %s", r.took)
	})

	t.Run("exit-code", func(t *testing.T) {
		id := uniqueID(t, "c16")
		r := ctrOn(t, e16, 2*time.Minute, append(run("--rm"), e16.image, id, "sh", "-c", "echo out; echo err >&2; exit 7")...)
		if r.code != 7 || r.stdout != "out\n" || !strings.Contains(r.stderr, "err\n") {
			t.Fatalf("exit %d stdout %q stderr %q; want 7, out, err", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("exec", func(t *testing.T) {
		id := uniqueID(t, "c16")
		if r := ctrOn(t, e16, 2*time.Minute, append(run("-d"), e16.image, id, "sleep", "1000")...); r.code != 0 {
			t.Fatalf("ctr run -d: exit %d: %s", r.code, r.stderr)
		}
		defer func() {
			ctrOn(t, e16, time.Minute, "task", "kill", "-s", "SIGKILL", id)
			waitFor(30*time.Second, func() bool {
				return ctrOn(t, e16, time.Minute, "task", "delete", id).code == 0
			})
			ctrOn(t, e16, time.Minute, "container", "delete", id)
		}()
		r := ctrOn(t, e16, time.Minute, "task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo from-exec; exit 5")
		if r.code != 5 || r.stdout != "from-exec\n" {
			t.Errorf("task exec: exit %d stdout %q stderr %q; want 5 and from-exec", r.code, r.stdout, r.stderr)
		}
		if ps := ctrOn(t, e16, time.Minute, "task", "ps", id); ps.code != 0 || !strings.Contains(ps.stdout, "PID") {
			t.Errorf("task ps: exit %d stdout %q stderr %q", ps.code, ps.stdout, ps.stderr)
		}
	})
}
