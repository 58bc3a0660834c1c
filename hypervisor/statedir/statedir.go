// Package statedir manages a VM's state directory (sockets, logs, pid files) and sweeps the
// ones left behind when their owner was killed without a chance to clean up.
//
// A state directory holds an "owner" file naming the process that created it and one
// "<name>.pid" file per helper process (QEMU, virtiofsd). Each names a process by pid and
// start time, so a recycled pid is never mistaken for the original. Sweep removes every
// directory under a root whose owner is gone, after killing the helpers it recorded.
package statedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const ownerFile = "owner"

// Dir is one VM's state directory.
type Dir struct {
	Path string
}

// Create makes path (which must not exist yet; its parent is created as needed) and records
// the calling process as its owner.
func Create(path string) (*Dir, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("statedir: create parent of %s: %w", path, err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		return nil, fmt.Errorf("statedir: create %s (a leftover? see Sweep): %w", path, err)
	}
	d := &Dir{Path: path}
	if err := d.write(ownerFile, os.Getpid()); err != nil {
		_ = os.RemoveAll(path)
		return nil, err
	}
	return d, nil
}

// File is the path of name inside the directory.
func (d *Dir) File(name string) string { return filepath.Join(d.Path, name) }

// RecordPID notes a helper process so that Sweep can kill it should the owner die.
func (d *Dir) RecordPID(name string, pid int) error {
	return d.write(name+".pid", pid)
}

// Remove deletes the directory and everything in it.
func (d *Dir) Remove() error {
	if err := os.RemoveAll(d.Path); err != nil {
		return fmt.Errorf("statedir: remove %s: %w", d.Path, err)
	}
	return nil
}

// write stores "pid starttime" in name, atomically.
func (d *Dir) write(name string, pid int) error {
	start, err := startTime(pid)
	if err != nil {
		return fmt.Errorf("statedir: record %s: %w", name, err)
	}
	tmp := d.File("." + name + ".tmp")
	data := fmt.Sprintf("%d %d\n", pid, start)
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		return fmt.Errorf("statedir: record %s: %w", name, err)
	}
	if err := os.Rename(tmp, d.File(name)); err != nil {
		return fmt.Errorf("statedir: record %s: %w", name, err)
	}
	return nil
}

// Sweep removes every directory directly under root whose owner process is gone, killing
// the helper processes it recorded first. Directories without an owner file (not made by
// Create, or being created right now) and those whose owner lives are left alone. It
// returns the directories it removed; a missing root is not an error.
func Sweep(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("statedir: sweep %s: %w", root, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		owner, err := readProc(filepath.Join(dir, ownerFile))
		if err != nil || owner.alive() {
			continue
		}
		if err := sweepDir(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// sweepDir kills the recorded helpers of one stale directory, then removes it.
func sweepDir(dir string) error {
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	var errs []error
	for _, f := range pidFiles {
		p, err := readProc(f)
		if err != nil || !p.alive() {
			continue
		}
		if err := p.kill(); err != nil {
			errs = append(errs, fmt.Errorf("statedir: kill %s (pid %d): %w", filepath.Base(f), p.pid, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("statedir: remove stale %s: %w", dir, err)
	}
	return nil
}

// proc names a process by pid and start time.
type proc struct {
	pid   int
	start uint64
}

func readProc(path string) (proc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return proc{}, err
	}
	var p proc
	if _, err := fmt.Sscanf(string(b), "%d %d", &p.pid, &p.start); err != nil || p.pid <= 0 {
		return proc{}, fmt.Errorf("statedir: malformed %s: %q", path, b)
	}
	return p, nil
}

// alive reports whether the very process p named still exists (and is not a zombie).
func (p proc) alive() bool {
	st, err := readStat(p.pid)
	return err == nil && st.start == p.start && st.state != "Z" && st.state != "X"
}

// kill sends SIGKILL to p's process group (helpers lead their own) and to p, and waits up
// to two seconds for it to go.
func (p proc) kill() error {
	if st, err := readStat(p.pid); err == nil && st.pgrp == p.pid {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if !p.alive() {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errors.New("still running 2s after SIGKILL")
}

type stat struct {
	state string
	pgrp  int
	start uint64
}

// readStat parses /proc/<pid>/stat: state (field 3), pgrp (5) and starttime (22).
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("statedir: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return stat{}, fmt.Errorf("statedir: short /proc/%d/stat", pid)
	}
	pgrp, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return stat{}, fmt.Errorf("statedir: parse /proc/%d/stat: %w", pid, err)
	}
	return stat{state: f[0], pgrp: pgrp, start: start}, nil
}

func startTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	return st.start, err
}
