package initsys

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseCmdline(t *testing.T) {
	got := ParseCmdline("console=ttyS0 quiet veil.log_level=debug  x=\"a b\" panic=-1\n console=hvc0")
	want := map[string]string{
		"console": "hvc0", "quiet": "", "veil.log_level": "debug", "x": "a b", "panic": "-1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseCmdline = %v, want %v", got, want)
	}
}

func TestParseModuleList(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
		wantErr  string
	}{
		{name: "empty", in: "", want: nil},
		{name: "order kept, comments and blanks skipped",
			in:   "# deps first\n/lib/modules/6.12/kernel/a.ko\n\n  /lib/modules/6.12/kernel/b.ko  \n/lib/modules/6.12//c.ko\n",
			want: []string{"/lib/modules/6.12/kernel/a.ko", "/lib/modules/6.12/kernel/b.ko", "/lib/modules/6.12/c.ko"}},
		{name: "relative path", in: "/a.ko\nkernel/b.ko\n", wantErr: "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseModuleList(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseModuleList = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestLoadModulesFailures(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if n, err := LoadModules(ctx, filepath.Join(dir, "none.list")); n != 0 || err != nil {
		t.Fatalf("missing list: LoadModules = %d, %v; want 0, nil", n, err)
	}
	list := filepath.Join(dir, "modules.list")
	// Neither module can load (one is missing, one is not a module), and no real module is
	// ever loaded into the host's kernel.
	notModule := filepath.Join(dir, "junk.ko")
	if err := os.WriteFile(notModule, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	content := filepath.Join(dir, "missing.ko") + "\n" + notModule + "\n"
	if err := os.WriteFile(list, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := LoadModules(ctx, list)
	if n != 0 || err == nil || !strings.Contains(err.Error(), "missing.ko") || !strings.Contains(err.Error(), "junk.ko") {
		t.Fatalf("LoadModules = %d, %v; want 0 and errors naming both modules", n, err)
	}
}

func TestEnableControllers(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := enableControllers(dir); err != nil {
		t.Fatalf("enableControllers: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if string(b) != "+cpuset +cpu +io +memory +pids" {
		t.Fatalf("subtree_control = %q", b)
	}
	if err := enableControllers(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("enableControllers on a directory without cgroup.controllers succeeded")
	}
}

func TestMountPoints(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	content := "22 1 0:21 / / rw - tmpfs rootfs rw\n" +
		"23 22 0:22 / /proc rw,nosuid - proc proc rw\n" +
		"24 22 0:23 / /run/veil/with\\040space rw - tmpfs tmpfs rw\n"
	if err := os.WriteFile(mi, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := mountPoints(mi)
	want := []string{"/", "/proc", "/run/veil/with space"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("mountPoints = %q, %v; want %q", got, err, want)
	}
	if s := unescapeOctal(`a\134b\011\0`); s != "a\\b\t\\0" {
		t.Fatalf("unescapeOctal = %q", s)
	}
}

func TestDescribeStatus(t *testing.T) {
	for ws, want := range map[unix.WaitStatus]string{
		0:           "exit status 0",
		3 << 8:      "exit status 3",
		9:           "killed by SIGKILL",
		0x7f | 1<<8: "wait status 0x17f",
	} {
		if got := describeStatus(ws); got != want {
			t.Errorf("describeStatus(%#x) = %q, want %q", uint32(ws), got, want)
		}
	}
}
