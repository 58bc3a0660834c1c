package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestMain(t *testing.T) {
	root := t.TempDir()
	shim := filepath.Join(root, "proc", "1000", "cmdline")
	os.MkdirAll(filepath.Dir(shim), 0o755)
	os.WriteFile(shim, []byte("containerd-shim-veil-v2\x00-id\x00x\x00"), 0o644)
	t.Setenv("NODE_NAME", "")
	t.Setenv("VEIL_ENABLE_SIM", "")
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{nil, exitUsage, "", "usage: veil-deploy COMMAND"},
		{[]string{"bogus"}, exitUsage, "", `unknown command "bogus"`},
		{[]string{"help"}, exitOK, "commands:", ""},
		{[]string{"check", "--host-root", root, "--payload", root}, exitOK, "qemu        no", ""},
		{[]string{"check", "--host-root", root, "extra"}, exitUsage, "", "unexpected argument"},
		{[]string{"check", "--host-root", filepath.Join(root, "nope")}, exitFailed, "", "not a directory"},
		{[]string{"check", "--host-root", root, "--restart", "reboot"}, exitFailed, "", "--restart"},
		{[]string{"uninstall", "--host-root", root, "--payload", root}, exitRunning, "", "pids [1000]"},
		{[]string{"ready", "--ready-file", filepath.Join(root, "ready")}, exitFailed, "", "not ready"},
		{[]string{"payload"}, exitUsage, "", "--out"},
		{[]string{"payload", "--out", filepath.Join(root, "p"), "--shim", filepath.Join(root, "missing")}, exitFailed, "", "missing"},
	} {
		code, out, errs := run(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errs, tc.err) {
			t.Errorf("veil-deploy %v: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out, errs, tc.code, tc.out, tc.err)
		}
	}
	os.WriteFile(filepath.Join(root, "ready"), nil, 0o644)
	if code, _, errs := run("ready", "--ready-file", filepath.Join(root, "ready")); code != exitOK {
		t.Errorf("ready: exit %d: %s", code, errs)
	}
	t.Setenv("VEIL_ENABLE_SIM", "maybe")
	if code, _, errs := run("check", "--host-root", root); code != exitUsage || !strings.Contains(errs, "VEIL_ENABLE_SIM") {
		t.Errorf("bad VEIL_ENABLE_SIM: exit %d: %s", code, errs)
	}
}
