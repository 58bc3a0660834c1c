package cpio

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sample(t *testing.T, reverse bool) *Archive {
	t.Helper()
	a := New()
	steps := []func() error{
		func() error { return a.AddFile("init", 0o755, []byte("#!/bin/true\n")) },
		func() error { return a.AddCharDevice("/dev/console", 0o600, 5, 1) },
		func() error { return a.AddCharDevice("dev/null", 0o666, 1, 3) },
		func() error { return a.AddFile("lib/modules/x/kernel/a.ko", 0o644, []byte("abc")) },
		func() error { return a.AddDir("tmp", 0o777|os.ModeSticky) },
		func() error { return a.AddDir("dev", 0o755) },
		func() error { return a.AddFile("etc/veil/modules.list", 0o644, []byte("/lib/modules/x/kernel/a.ko\n")) },
	}
	if reverse {
		for i, j := 0, len(steps)-1; i < j; i, j = i+1, j-1 {
			steps[i], steps[j] = steps[j], steps[i]
		}
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func bytesOf(t *testing.T, a *Archive) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func TestDeterministicRegardlessOfOrder(t *testing.T) {
	a, b := bytesOf(t, sample(t, false)), bytesOf(t, sample(t, true))
	if !bytes.Equal(a, b) {
		t.Fatal("the same entries added in another order gave different bytes")
	}
	if len(a)%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", len(a))
	}
	if !bytes.Contains(a, []byte("TRAILER!!!\x00")) {
		t.Error("no trailer")
	}
}

func TestHeaderLayout(t *testing.T) {
	a := New()
	if err := a.AddFile("x", 0o644, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := string(bytesOf(t, a))
	want := "070701" + "00000001" + "000081a4" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000005" + "00000000" + "00000000" + "00000000" + "00000000" + "00000002" + "00000000" +
		"x\x00" + "hello" + "\x00\x00\x00"
	if !strings.HasPrefix(got, want) {
		t.Fatalf("entry:\n got %q\nwant %q", got[:len(want)], want)
	}
	tr := got[len(want):]
	if !strings.HasPrefix(tr, "070701"+"00000000"+"00000000") || !strings.Contains(tr, "TRAILER!!!") {
		t.Fatalf("bad trailer %q", tr)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		run     func(a *Archive) error
		wantErr string
	}{
		{"empty", func(a *Archive) error { return a.AddFile("", 0o644, nil) }, "invalid cpio entry path"},
		{"root", func(a *Archive) error { return a.AddDir("/", 0o755) }, "invalid cpio entry path"},
		{"dotdot", func(a *Archive) error { return a.AddFile("a/../../b", 0o644, nil) }, "invalid cpio entry path"},
		{"twice", func(a *Archive) error {
			_ = a.AddFile("a", 0o644, nil)
			return a.AddFile("/a", 0o644, nil)
		}, `"a" added twice`},
		{"file as parent", func(a *Archive) error {
			_ = a.AddFile("a", 0o644, nil)
			return a.AddFile("a/b", 0o644, nil)
		}, "is not a directory"},
		{"dir twice", func(a *Archive) error {
			_ = a.AddDir("d", 0o755)
			return a.AddDir("d", 0o700)
		}, "added twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(New())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if err := New().AddDir("..", 0o755); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("err = %v, want ErrInvalidPath", err)
	}
}

// TestGNUCpioReadsIt checks the archive with an independent reader.
func TestGNUCpioReadsIt(t *testing.T) {
	cpioBin, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatal("GNU cpio not installed: apt-get install cpio (make deps)")
	}
	file := filepath.Join(t.TempDir(), "a.cpio")
	if err := os.WriteFile(file, bytesOf(t, sample(t, false)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runCpio(t, cpioBin, file, "-t")
	want := []string{"dev", "dev/console", "dev/null", "etc", "etc/veil", "etc/veil/modules.list",
		"init", "lib", "lib/modules", "lib/modules/x", "lib/modules/x/kernel", "lib/modules/x/kernel/a.ko", "tmp"}
	if got := strings.Fields(out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("cpio -t listed\n%v\nwant\n%v", got, want)
	}
	long := runCpio(t, cpioBin, file, "-tv", "--numeric-uid-gid")
	for _, w := range []string{"crw-------   1 0        0          5,   1 Jan  1  1970 dev/console",
		"crw-rw-rw-   1 0        0          1,   3 Jan  1  1970 dev/null",
		"drwxrwxrwt   2 0        0               0 Jan  1  1970 tmp",
		"-rwxr-xr-x   1 0        0              12 Jan  1  1970 init"} {
		if !strings.Contains(long, w) {
			t.Errorf("cpio -tv lacks %q:\n%s", w, long)
		}
	}
}

func runCpio(t *testing.T, bin, file string, args ...string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, append(args, "--quiet")...)
	cmd.Stdin, cmd.Stderr = f, &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio %v: %v: %s", args, err, stderr.String())
	}
	return string(out)
}
