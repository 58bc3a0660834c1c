package statedir

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func TestCreate(t *testing.T) {
	root := t.TempDir()
	d, err := Create(filepath.Join(root, "a", "vm"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	owner, err := readProc(d.File("owner"))
	if err != nil || owner.pid != os.Getpid() || !owner.alive() {
		t.Fatalf("owner %+v, %v; want this live process", owner, err)
	}
	if _, err := Create(d.Path); err == nil {
		t.Error("Create of an existing directory succeeded")
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Remove left %s", d.Path)
	}
}

func TestSweep(t *testing.T) {
	root := t.TempDir()

	// live: owned by this process; must stay.
	live, err := Create(filepath.Join(root, "live"))
	if err != nil {
		t.Fatal(err)
	}
	// foreign: no owner file; must stay.
	if err := os.Mkdir(filepath.Join(root, "foreign"), 0o700); err != nil {
		t.Fatal(err)
	}
	// stale: its owner is gone, a helper it recorded still runs.
	stale, err := Create(filepath.Join(root, "stale"))
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command("sleep", "100")
	helper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { _ = helper.Wait(); close(reaped) }()
	defer helper.Process.Kill()
	if err := stale.RecordPID("qemu", helper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// The owner "was" this pid, but started at another time: a recycled pid is not the owner.
	fake := strconv.Itoa(os.Getpid()) + " 1\n"
	if err := os.WriteFile(stale.File("owner"), []byte(fake), 0o600); err != nil {
		t.Fatal(err)
	}

	removed, err := Sweep(root)
	if err != nil || len(removed) != 1 || removed[0] != stale.Path {
		t.Fatalf("Sweep = %v, %v; want [%s]", removed, err, stale.Path)
	}
	select {
	case <-reaped:
	case <-time.After(2 * time.Second):
		t.Error("the stale directory's helper still runs")
	}
	for _, keep := range []string{live.Path, filepath.Join(root, "foreign")} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("Sweep removed %s: %v", keep, err)
		}
	}
	if removed, err := Sweep(filepath.Join(root, "missing")); err != nil || removed != nil {
		t.Errorf("Sweep of a missing root = %v, %v", removed, err)
	}
}
