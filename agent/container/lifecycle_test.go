package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/storage"
)

func TestRemoveKillsAfterTimeout(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	// The shell ignores SIGTERM, so only the SIGKILL after the timeout ends it.
	id := run(t, m, testSpec(newRootfs(t), "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"), false)
	ctx := testCtx(t)
	if data, _, err := m.ReadStdout(ctx, id, "", 0); err != nil || string(data) != "ready\n" {
		t.Fatalf("output = %q, %v", data, err)
	}
	start := time.Now()
	if err := m.Remove(ctx, id, 300*time.Millisecond); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Remove took %s, want at least the 300ms timeout", d)
	}
	if e := waitEvent(t, m, id, "", api.Event_EXIT); e.GetExitStatus() != 137 {
		t.Errorf("exit event = %v, want status 137", e)
	}
	assertGone(t, m, id)
}

func TestRemoveStopsWithSIGTERM(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	id := run(t, m, testSpec(newRootfs(t), "sh", "-c", "trap 'exit 5' TERM; echo ready; while :; do sleep 0.1; done"), false)
	ctx := testCtx(t)
	if data, _, err := m.ReadStdout(ctx, id, "", 0); err != nil || string(data) != "ready\n" {
		t.Fatalf("output = %q, %v", data, err)
	}
	if err := m.Remove(ctx, id, 10*time.Second); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if e := waitEvent(t, m, id, "", api.Event_EXIT); e.GetExitStatus() != 5 {
		t.Errorf("exit event = %v, want status 5 from the TERM trap", e)
	}
	assertGone(t, m, id)
}

func TestRemoveCreatedContainer(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	id := testID(t)
	ctx := testCtx(t)
	if err := m.Create(ctx, id, specJSON(t, testSpec(newRootfs(t), "true")), true, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, id, time.Second); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	assertGone(t, m, id)
}

func TestPauseResumeStatsUpdate(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	s := testSpec(newRootfs(t), "sleep", "1000")
	limit, pids := int64(64<<20), int64(50)
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
	id := run(t, m, s, false)
	ctx := testCtx(t)
	// pids counts tasks: until runc's init has exec'd sleep it may count several threads.
	var st *api.StatsContainerResponse
	for range 100 {
		var err error
		if st, err = m.Stats(ctx, id); err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st.GetPidsCurrent() == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.GetMemoryLimitBytes() != uint64(limit) || st.GetPidsLimit() != uint64(pids) || st.GetPidsCurrent() != 1 {
		t.Errorf("Stats = %v, want memory limit %d, pids 1 of %d", st, limit, pids)
	}
	if st.GetMemoryUsageBytes() == 0 {
		t.Errorf("Stats = %v, want some memory usage", st)
	}
	if err := m.Update(ctx, id, &api.Resources{MemoryLimitBytes: 96 << 20, PidsLimit: 70}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if st, err := m.Stats(ctx, id); err != nil || st.GetMemoryLimitBytes() != 96<<20 || st.GetPidsLimit() != 70 {
		t.Errorf("Stats after Update = %v, %v", st, err)
	}
	if err := m.Resume(ctx, id); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Resume of a running container: %v, want FailedPrecondition", err)
	}
	if err := m.Pause(ctx, id); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	err := m.Exec(ctx, id, "e", &api.Process{Args: []string{"true"}, Env: []string{"PATH=/bin"}})
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Exec in a paused container: %v, want FailedPrecondition", err)
	}
	if err := m.Resume(ctx, id); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := m.Pause(ctx, id); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	// Removing a paused container thaws and kills it.
	if err := m.Remove(ctx, id, 0); err != nil {
		t.Fatalf("Remove of a paused container: %v", err)
	}
	assertGone(t, m, id)
}

func TestOOMKill(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	// dd's 256 MiB buffer cannot fit below a 32 MiB limit (no swap: swap limit = memory).
	s := testSpec(newRootfs(t), "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	limit := int64(32 << 20)
	s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
	id := run(t, m, s, false)
	ctx := testCtx(t)
	st, err := m.Wait(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.GetStatus() != 137 || st.GetSignal() != 9 || !st.GetOomKilled() {
		t.Errorf("Wait = %v, want status 137, signal 9, oom_killed", st)
	}
	waitEvent(t, m, id, "", api.Event_OOM)
	if stats, err := m.Stats(ctx, id); err != nil || stats.GetOomKills() == 0 {
		t.Errorf("Stats = %v, %v; want oom_kills > 0", stats, err)
	}
}

// TestOutputBackpressure checks that a process whose output nobody reads blocks once the
// agent's buffer is full, and that no byte is lost.
func TestOutputBackpressure(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	id := run(t, m, testSpec(newRootfs(t), "dd", "if=/dev/zero", "bs=65536", "count=64"), false)
	ctx, cancel := context.WithTimeout(testCtx(t), time.Second)
	defer cancel()
	if _, err := m.Wait(ctx, id, ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait before the output was read: %v, want the process still blocked", err)
	}
	if out := readAll(t, m, id, "", false); len(out) != 64*65536 {
		t.Errorf("read %d bytes, want %d", len(out), 64*65536)
	}
	if st, err := m.Wait(testCtx(t), id, ""); err != nil || st.GetStatus() != 0 {
		t.Errorf("Wait = %v, %v", st, err)
	}
}

func TestStoragesMountedAndUnmounted(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	rootfs := newRootfs(t)
	mnt := filepath.Join(api.StorageDir, filepath.Base(filepath.Dir(rootfs)), "data")
	storages := []*api.Storage{{Driver: api.DriverTmpfs, MountPoint: mnt, Options: []string{"size=1m"}}}
	ctx := testCtx(t)

	// A failed create unmounts what it mounted.
	id := testID(t)
	if err := m.Create(ctx, id, specJSON(t, testSpec(rootfs, "nosuchprog")), false, storages); err == nil {
		t.Fatal("Create of a missing binary succeeded")
	}
	if mounted(t, mnt) {
		t.Errorf("%s is still mounted after a failed create", mnt)
	}
	assertGone(t, m, id)

	s := testSpec(rootfs, "sh", "-c", "cat /data/hello")
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: mnt, Options: []string{"rbind", "ro"}})
	id = testID(t)
	if err := m.Create(ctx, id, specJSON(t, s), false, storages); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "hello"), []byte("from storage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if out := readAll(t, m, id, "", false); string(out) != "from storage\n" {
		t.Errorf("output = %q", out)
	}
	if err := m.Remove(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if mounted(t, mnt) {
		t.Errorf("%s is still mounted after Remove", mnt)
	}
}

// mounted reports whether dir is a mount point. It reads the calling thread's view: the
// main thread's (/proc/self) may be stuck in a container's mount namespace, where runc's
// mount-source goroutine (locked, setns) ended if it ran on the main thread.
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func TestUserAndCwdAndEnv(t *testing.T) {
	requireRoot(t)
	m := newTestManager(t)
	s := testSpec(newRootfs(t), "sh", "-c", "id -u; id -g; id -G; pwd; echo $FOO")
	s.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{2000}}
	s.Process.Cwd = "/tmp"
	s.Process.Env = append(s.Process.Env, "FOO=bar")
	id := run(t, m, s, false)
	out := string(readAll(t, m, id, "", false))
	if want := "1000\n1001\n1001 2000\n/tmp\nbar\n"; out != want {
		t.Errorf("output = %q, want %q", out, want)
	}
	ctx := testCtx(t)
	if err := m.Signal(ctx, id, "", 0, false); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Signal 0: %v, want InvalidArgument", err)
	}
	if _, err := m.Wait(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if err := m.Signal(ctx, id, "", syscall.SIGTERM, false); !errdefs.IsNotFound(err) {
		t.Errorf("Signal of an exited init: %v, want NotFound", err)
	}
}

func TestNextEventCancelled(t *testing.T) {
	m, err := NewManager(t.TempDir(), storage.New(""))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := m.NextEvent(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("NextEvent = %v, want DeadlineExceeded", err)
	}
	m.events.push(&api.Event{Type: api.Event_EXIT, ContainerId: "a"})
	m.events.push(&api.Event{Type: api.Event_OOM, ContainerId: "b"})
	for _, want := range []string{"a", "b"} {
		if e, err := m.NextEvent(context.Background()); err != nil || e.GetContainerId() != want {
			t.Errorf("NextEvent = %v, %v; want container %s", e, err, want)
		}
	}
}
