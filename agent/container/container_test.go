package container

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
)

// waitEvent returns the next queued event of container id of type typ (and exec id execID).
func waitEvent(t *testing.T, m *Manager, id, execID string, typ api.Event_Type) *api.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		e, err := m.NextEvent(ctx)
		if err != nil {
			t.Fatalf("no %s event for %s/%q: %v", typ, id, execID, err)
		}
		if e.GetContainerId() == id && e.GetType() == typ && (typ != api.Event_EXIT || e.GetExecId() == execID) {
			return e
		}
	}
}

// cgroupDirs returns where the cgroup of container id would be.
func cgroupDirs(id string) []string {
	if cgroups.IsCgroup2UnifiedMode() {
		return []string{filepath.Join("/sys/fs/cgroup", CgroupParent, id)}
	}
	var dirs []string
	for _, c := range []string{"memory", "pids", "cpu", "devices", "freezer"} {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", c, CgroupParent, id))
	}
	return dirs
}

// assertGone checks that nothing of container id is left: state, cgroup, entry.
func assertGone(t *testing.T, m *Manager, id string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(m.root, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("libcontainer state of %s is left behind (stat: %v)", id, err)
	}
	for _, d := range cgroupDirs(id) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s is left behind (stat: %v)", d, err)
		}
	}
	if _, err := m.get(id); !errdefs.IsNotFound(err) {
		t.Errorf("container %s is still known: %v", id, err)
	}
}

func TestEchoAndExitCodes(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	for _, tc := range []struct {
		name           string
		args           []string
		stdout, stderr string
		status         int32
	}{
		{"echo", []string{"echo", "hello"}, "hello\n", "", 0},
		{"exit7", []string{"sh", "-c", "echo out; echo err >&2; exit 7"}, "out\n", "err\n", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := run(t, m, testSpec(newRootfs(t), tc.args...), false)
			if out := readAll(t, m, id, "", false); string(out) != tc.stdout {
				t.Errorf("stdout = %q, want %q", out, tc.stdout)
			}
			if out := readAll(t, m, id, "", true); string(out) != tc.stderr {
				t.Errorf("stderr = %q, want %q", out, tc.stderr)
			}
			st, err := m.Wait(testCtx(t), id, "")
			if err != nil || st.GetStatus() != tc.status || st.GetSignal() != 0 || st.GetOomKilled() {
				t.Errorf("Wait = %v, %v; want status %d", st, err, tc.status)
			}
			if e := waitEvent(t, m, id, "", api.Event_EXIT); e.GetExitStatus() != tc.status || e.GetPid() == 0 {
				t.Errorf("exit event = %v, want status %d and a pid", e, tc.status)
			}
			if err := m.Remove(testCtx(t), id, time.Second); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			assertGone(t, m, id)
		})
	}
}

func TestStdinMegabyteThroughCat(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	id := run(t, m, testSpec(newRootfs(t), "cat"), true)
	data := make([]byte, 1<<20+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < len(data); off += 100000 {
			end := min(off+100000, len(data))
			n, err := m.WriteStdin(ctx, id, "", data[off:end])
			if err != nil || n != end-off {
				errc <- errors.Join(err, errors.New("short write"))
				return
			}
		}
		errc <- m.CloseStdin(ctx, id, "")
	}()
	out := readAll(t, m, id, "", false)
	if err := <-errc; err != nil {
		t.Fatalf("writing stdin: %v", err)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("cat returned %d bytes that differ from the %d written", len(out), len(data))
	}
	if st, err := m.Wait(ctx, id, ""); err != nil || st.GetStatus() != 0 {
		t.Errorf("Wait = %v, %v; want status 0", st, err)
	}
	if _, err := m.WriteStdin(ctx, id, "", []byte("x")); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("WriteStdin after CloseStdin: %v, want FailedPrecondition", err)
	}
}

func TestExecSignalWait(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	id := run(t, m, testSpec(newRootfs(t), "sleep", "1000"), false)
	ctx := testCtx(t)
	proc := &api.Process{Args: []string{"sh", "-c", "echo started; exec sleep 1000"}, Env: []string{"PATH=/bin"}}
	if err := m.Exec(ctx, id, "e1", proc); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if err := m.Exec(ctx, id, "e1", proc); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Exec e1: %v, want AlreadyExists", err)
	}
	if data, _, err := m.ReadStdout(ctx, id, "e1", 0); err != nil || string(data) != "started\n" {
		t.Fatalf("exec output = %q, %v", data, err)
	}
	// The shell prints before it execs sleep: poll until it has.
	var procs []*api.ProcessInfo
	for range 100 {
		var err error
		if procs, err = m.ListProcesses(ctx, id); err != nil || len(procs) != 2 {
			t.Fatalf("ListProcesses = %v, %v; want 2 processes", procs, err)
		}
		if execRuns(procs, "e1", "sleep 1000") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !execRuns(procs, "e1", "sleep 1000") {
		t.Errorf("ListProcesses = %v, want exec e1 running sleep 1000", procs)
	}
	if err := m.Signal(ctx, id, "e1", syscall.SIGUSR1, false); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	st, err := m.Wait(ctx, id, "e1")
	if err != nil || st.GetStatus() != 128+int32(syscall.SIGUSR1) || st.GetSignal() != uint32(syscall.SIGUSR1) {
		t.Errorf("Wait e1 = %v, %v; want status %d", st, err, 128+syscall.SIGUSR1)
	}
	if e := waitEvent(t, m, id, "e1", api.Event_EXIT); e.GetExitStatus() != 128+int32(syscall.SIGUSR1) {
		t.Errorf("exit event of e1 = %v", e)
	}
	if err := m.Signal(ctx, id, "e1", syscall.SIGKILL, false); !errdefs.IsNotFound(err) {
		t.Errorf("Signal of an exited exec: %v, want NotFound", err)
	}
	if err := m.Signal(ctx, id, "", syscall.SIGKILL, true); err != nil {
		t.Fatalf("Signal all: %v", err)
	}
	if st, err := m.Wait(ctx, id, ""); err != nil || st.GetStatus() != 137 {
		t.Errorf("Wait init = %v, %v; want 137", st, err)
	}
}

// execRuns reports whether procs hold exec execID running args.
func execRuns(procs []*api.ProcessInfo, execID, args string) bool {
	for _, p := range procs {
		if p.GetExecId() == execID && strings.Join(p.GetArgs(), " ") == args {
			return true
		}
	}
	return false
}

func TestTerminal(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	s := testSpec(newRootfs(t), "sh", "-c", "tty; stty size; echo done")
	s.Process.Terminal = true
	id := testID(t)
	ctx := testCtx(t)
	if err := m.Create(ctx, id, specJSON(t, s), false, nil); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := m.ResizeTerminal(ctx, id, "", 40, 100); err != nil {
		t.Fatalf("ResizeTerminal: %v", err)
	}
	if err := m.Start(ctx, id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	out := strings.ReplaceAll(string(readAll(t, m, id, "", false)), "\r", "")
	if want := "/dev/pts/0\n40 100\ndone\n"; out != want {
		t.Errorf("terminal output = %q, want %q", out, want)
	}
	if errOut := readAll(t, m, id, "", true); len(errOut) != 0 {
		t.Errorf("stderr of a terminal process = %q, want none", errOut)
	}
	if st, err := m.Wait(ctx, id, ""); err != nil || st.GetStatus() != 0 {
		t.Errorf("Wait = %v, %v", st, err)
	}
}

func TestTerminalExecWithStdin(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	id := run(t, m, testSpec(newRootfs(t), "sleep", "1000"), false)
	ctx := testCtx(t)
	proc := &api.Process{Args: []string{"sh"}, Env: []string{"PATH=/bin"}, Terminal: true, Stdin: true}
	if err := m.Exec(ctx, id, "tty", proc); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if _, err := m.WriteStdin(ctx, id, "tty", []byte("echo $((6*7)); exit 3\n")); err != nil {
		t.Fatalf("WriteStdin: %v", err)
	}
	if out := readAll(t, m, id, "tty", false); !bytes.Contains(out, []byte("42")) {
		t.Errorf("terminal output = %q, want 42 in it", out)
	}
	if st, err := m.Wait(ctx, id, "tty"); err != nil || st.GetStatus() != 3 {
		t.Errorf("Wait = %v, %v; want 3", st, err)
	}
}

func TestIDs(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	ctx := testCtx(t)
	rootfs := newRootfs(t)
	id := run(t, m, testSpec(rootfs, "sleep", "1000"), false)
	if err := m.Create(ctx, id, specJSON(t, testSpec(rootfs, "true")), false, nil); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Create of a duplicate id: %v, want AlreadyExists", err)
	}
	if err := m.Create(ctx, "../etc", specJSON(t, testSpec(rootfs, "true")), false, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Create with a bad id: %v, want InvalidArgument", err)
	}
	checks := map[string]error{
		"Start":      m.Start(ctx, "nosuch"),
		"Remove":     m.Remove(ctx, "nosuch", 0),
		"Signal":     m.Signal(ctx, "nosuch", "", syscall.SIGTERM, false),
		"Pause":      m.Pause(ctx, "nosuch"),
		"Exec":       m.Exec(ctx, "nosuch", "e", &api.Process{Args: []string{"true"}}),
		"CloseStdin": m.CloseStdin(ctx, "nosuch", ""),
	}
	_, checks["Wait"] = m.Wait(ctx, "nosuch", "")
	_, checks["Stats"] = m.Stats(ctx, "nosuch")
	_, _, checks["ReadStdout"] = m.ReadStdout(ctx, "nosuch", "", 0)
	_, checks["WaitExec"] = m.Wait(ctx, id, "nosuch")
	for name, err := range checks {
		if !errdefs.IsNotFound(err) {
			t.Errorf("%s of an unknown id: %v, want NotFound", name, err)
		}
	}
}

func TestMissingBinary(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	ctx := testCtx(t)
	rootfs := newRootfs(t)
	for _, arg0 := range []string{"nosuchprog", "/usr/bin/nosuchprog"} {
		id := testID(t)
		err := m.Create(ctx, id, specJSON(t, testSpec(rootfs, arg0)), false, nil)
		t.Logf("Create %s: %v", arg0, err)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), arg0) {
			t.Errorf("Create running %s: %v, want InvalidArgument naming it", arg0, err)
		}
		assertGone(t, m, id)
	}
	id := run(t, m, testSpec(rootfs, "sleep", "1000"), false)
	err := m.Exec(ctx, id, "e", &api.Process{Args: []string{"nosuchprog"}, Env: []string{"PATH=/bin"}})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "nosuchprog") {
		t.Errorf("Exec of a missing binary: %v, want InvalidArgument naming it", err)
	}
}

// TestMissingBinaryOnMount checks that a binary the pre-check cannot judge (it would lie on a
// mount) still fails with an error that names it, from libcontainer.
func TestMissingBinaryOnMount(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	s := testSpec(newRootfs(t), "/opt/tool/nosuchprog")
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/opt/tool", Type: "tmpfs", Source: "tmpfs"})
	id := testID(t)
	err := m.Create(testCtx(t), id, specJSON(t, s), false, nil)
	t.Logf("Create: %v", err)
	if err == nil || !strings.Contains(err.Error(), "nosuchprog") {
		t.Errorf("Create: %v, want an error naming nosuchprog", err)
	}
	assertGone(t, m, id)
}

func TestBadSpecs(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	rootfs := newRootfs(t)
	good := func() *specs.Spec { return testSpec(rootfs, "true") }
	for _, tc := range []struct {
		name, want string
		spec       func() []byte
	}{
		{"not JSON", "not valid JSON", func() []byte { return []byte("{") }},
		{"empty", "oci_spec is empty", func() []byte { return nil }},
		{"no root", "root.path", func() []byte { s := good(); s.Root = nil; return specJSON(t, s) }},
		{"root outside", "root.path", func() []byte { s := good(); s.Root.Path = "/tmp"; return specJSON(t, s) }},
		{"root missing", "root.path", func() []byte { s := good(); s.Root.Path = rootfs + "-no"; return specJSON(t, s) }},
		{"no process", "process is missing", func() []byte { s := good(); s.Process = nil; return specJSON(t, s) }},
		{"no args", "process.args", func() []byte { s := good(); s.Process.Args = nil; return specJSON(t, s) }},
		{"hooks", "hooks", func() []byte { s := good(); s.Hooks = &specs.Hooks{}; return specJSON(t, s) }},
		{"rlimit", "process.rlimits[0]", func() []byte {
			s := good()
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}
			return specJSON(t, s)
		}},
		{"namespace path", "linux.namespaces", func() []byte {
			s := good()
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/nonexistent/ns"})
			return specJSON(t, s)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := testID(t)
			err := m.Create(testCtx(t), id, tc.spec(), false, nil)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Create: %v, want InvalidArgument mentioning %q", err, tc.want)
			}
			assertGone(t, m, id)
			// CreateSpec, from the spec the policy judged, checks it as Create does.
			var s *specs.Spec
			if raw := tc.spec(); raw != nil {
				if json.Unmarshal(raw, &s) != nil {
					return // not a spec at all: only Create sees bytes
				}
			}
			err = m.CreateSpec(testCtx(t), id, s, false, nil)
			if !errdefs.IsInvalidArgument(err) || (s != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("CreateSpec: %v, want InvalidArgument mentioning %q", err, tc.want)
			}
			assertGone(t, m, id)
		})
	}
}

func TestSeccompDecision(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	s := testSpec(newRootfs(t), "sh", "-c", "mkdir /made && echo made || echo denied")
	s.Root.Readonly = false
	eperm := uint(syscall.EPERM)
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eperm},
		},
	}
	id := testID(t)
	err := m.Create(testCtx(t), id, specJSON(t, s), false, nil)
	if !SeccompSupported {
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "seccomp") {
			t.Errorf("Create with seccomp, built without it: %v, want FailedPrecondition", err)
		}
		assertGone(t, m, id)
		return
	}
	if err != nil {
		t.Fatalf("Create with seccomp: %v", err)
	}
	if err := m.Start(testCtx(t), id); err != nil {
		t.Fatal(err)
	}
	if out := readAll(t, m, id, "", false); string(out) != "denied\n" {
		t.Errorf("output = %q, want the profile to deny mkdir", out)
	}
}
