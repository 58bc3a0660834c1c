//go:build e2e

package shim

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestRunEcho(t *testing.T) {
	id := uniqueID(t, "c")
	r := ctr(t, 2*time.Minute, append(runArgs("--rm"), env.image, id, "echo", "hi")...)
	if r.code != 0 || r.stdout != "hi\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and \"hi\\n\"", r.code, r.stdout, r.stderr)
	}
	t.Logf("ctr run --rm echo hi took %s", r.took)
	if c := ctr(t, time.Minute, "container", "info", id); c.code == 0 {
		t.Errorf("container %s still exists after --rm", id)
	}
}

func TestRunExitCode(t *testing.T) {
	id := uniqueID(t, "c")
	r := ctr(t, 2*time.Minute, append(runArgs("--rm"), env.image, id, "sh", "-c", "echo out; echo err >&2; exit 7")...)
	if r.code != 7 {
		t.Fatalf("exit %d, want 7 (stderr %q)", r.code, r.stderr)
	}
	if r.stdout != "out\n" || !strings.Contains(r.stderr, "err\n") {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
}

func TestRunStdin(t *testing.T) {
	id := uniqueID(t, "c")
	cmd := env.ctrCmd(t.Context(), append(runArgs("--rm"), env.image, id, "sh", "-c", "wc -c")...)
	cmd.Stdin = strings.NewReader(strings.Repeat("x", 100000))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ctr run with stdin: %v\n%s", err, stderr.String())
	}
	if strings.TrimSpace(string(out)) != "100000" {
		t.Errorf("wc -c printed %q, want 100000", out)
	}
}

func TestLogURIFile(t *testing.T) {
	id := uniqueID(t, "c")
	logPath := t.TempDir() + "/out.log"
	args := append(runArgs("--rm", "--log-uri", "file://"+logPath), env.image, id, "sh", "-c", "echo to-log; echo err-log >&2")
	mustCtr(t, 2*time.Minute, args...)
	data, _ := os.ReadFile(logPath)
	if !strings.Contains(string(data), "to-log") || !strings.Contains(string(data), "err-log") {
		t.Errorf("log file holds %q", data)
	}
}
