package podcgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// RecordFile, in the pod directory, names the cgroup the shim created for the pod.
	RecordFile = "cgroup.json"
	// unifiedMount is where cgroup v2 is mounted on a unified host.
	unifiedMount      = "/sys/fs/cgroup"
	defaultRemoveWait = 5 * time.Second
)

// removeWait bounds how long Remove waits for the pod's processes to leave the cgroup (QEMU
// and virtiofsd dying of a SIGKILL are gone a moment after the signal).
var removeWait = defaultRemoveWait

// record is what RecordFile holds: the cgroup's path in each v1 hierarchy, or in v2's.
type record struct {
	Mode string            `json:"mode"` // "v1" or "v2"
	V1   map[string]string `json:"v1,omitempty"`
	V2   string            `json:"v2,omitempty"`
}

// Group is a pod's sandbox cgroup, which the shim made and joined.
type Group struct {
	rec    record
	pid    int
	v1     cgroup1.Cgroup
	v2     *cgroup2.Manager
	origV1 cgroup1.Cgroup // where pid was before Join
	origV2 *cgroup2.Manager
}

// Path is the cgroup's path: in v2, or in v1's memory hierarchy (where the kubelet reads a
// pod's memory from).
func (g *Group) Path() string {
	if g.rec.Mode == "v2" {
		return g.rec.V2
	}
	return g.rec.V1[string(cgroup1.Memory)]
}

// Join creates the pod's sandbox cgroup and moves process pid (the shim itself: its
// children, QEMU and virtiofsd, are then born in it) into it. The cgroup is cgroupsPath (the
// sandbox container's OCI linux.cgroupsPath, see ResolvePath), or when that is empty
// veil-<vmID> below pid's own cgroup in each hierarchy. It is recorded in podDir first, so
// that Remove(podDir) finds it whatever happens later. On failure nothing is left.
func Join(podDir, cgroupsPath, vmID string, pid int) (_ *Group, retErr error) {
	g := &Group{pid: pid}
	var target string
	if cgroupsPath != "" {
		var err error
		if target, err = ResolvePath(cgroupsPath); err != nil {
			return nil, err
		}
	}
	switch mode := cgroups.Mode(); mode {
	case cgroups.Unified:
		if err := g.prepareV2(target, vmID); err != nil {
			return nil, err
		}
	case cgroups.Legacy, cgroups.Hybrid:
		if err := g.prepareV1(target, vmID); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("pod cgroup: no cgroup file system mounted at %s", unifiedMount)
	}
	data, err := json.Marshal(g.rec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(podDir, RecordFile), data, 0o600); err != nil {
		return nil, fmt.Errorf("pod cgroup: record it: %w", err)
	}
	defer func() {
		if retErr != nil {
			if err := g.Leave(); err != nil {
				retErr = errors.Join(retErr, err)
			}
			if err := Remove(podDir); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	if g.rec.Mode == "v2" {
		if g.v2, err = cgroup2.NewManager(unifiedMount, g.rec.V2, &cgroup2.Resources{}); err != nil {
			return nil, fmt.Errorf("pod cgroup: create %s: %w", filepath.Join(unifiedMount, g.rec.V2), err)
		}
		if err := g.v2.AddProc(uint64(pid)); err != nil {
			return nil, fmt.Errorf("pod cgroup: move pid %d into %s: %w", pid, filepath.Join(unifiedMount, g.rec.V2), err)
		}
		return g, nil
	}
	if g.v1, err = cgroup1.New(mapPath(g.rec.V1), &specs.LinuxResources{}, cgroup1.WithHierarchy(g.hierarchy)); err != nil {
		return nil, fmt.Errorf("pod cgroup: create %s in the v1 hierarchies: %w", g.Path(), err)
	}
	if err := g.v1.AddProc(uint64(pid)); err != nil {
		return nil, fmt.Errorf("pod cgroup: move pid %d into %s (v1): %w", pid, g.Path(), err)
	}
	return g, nil
}

// prepareV2 computes the v2 path and remembers pid's current cgroup.
func (g *Group) prepareV2(target, vmID string) error {
	_, cur, err := cgroups.ParseCgroupFileUnified(fmt.Sprintf("/proc/%d/cgroup", g.pid))
	if err != nil {
		return fmt.Errorf("pod cgroup: read the cgroup of pid %d: %w", g.pid, err)
	}
	if cur == "" {
		return fmt.Errorf("pod cgroup: pid %d has no cgroup v2 path in /proc/%d/cgroup", g.pid, g.pid)
	}
	if target == "" {
		target = filepath.Join(cur, "veil-"+vmID)
	}
	if g.origV2, err = cgroup2.Load(cur, cgroup2.WithMountpoint(unifiedMount)); err != nil {
		return fmt.Errorf("pod cgroup: load the cgroup %s of pid %d: %w", cur, g.pid, err)
	}
	g.rec = record{Mode: "v2", V2: target}
	return nil
}

// prepareV1 computes the path in every mounted v1 hierarchy and remembers pid's current
// cgroups.
func (g *Group) prepareV1(target, vmID string) error {
	subsystems, err := g.hierarchy()
	if err != nil {
		return fmt.Errorf("pod cgroup: list the cgroup v1 hierarchies: %w", err)
	}
	cur := cgroup1.PidPath(g.pid)
	g.rec = record{Mode: "v1", V1: map[string]string{}}
	for _, s := range subsystems {
		p := target
		if p == "" {
			base, err := cur(s.Name())
			if err != nil {
				return fmt.Errorf("pod cgroup: the %s cgroup of pid %d: %w", s.Name(), g.pid, err)
			}
			p = filepath.Join(base, "veil-"+vmID)
		}
		g.rec.V1[string(s.Name())] = p
	}
	if g.origV1, err = cgroup1.Load(cur, cgroup1.WithHierarchy(g.hierarchy), allowAny); err != nil {
		return fmt.Errorf("pod cgroup: load the cgroups of pid %d: %w", g.pid, err)
	}
	return nil
}

// hierarchy is the v1 hierarchies the pod's cgroup is made in: every mounted one
// (cgroup1.Default), which is what runc's cgroupfs driver joins too.
func (g *Group) hierarchy() ([]cgroup1.Subsystem, error) { return cgroup1.Default() }

// allowAny loads a cgroup in whichever hierarchies it exists.
func allowAny(c *cgroup1.InitConfig) error {
	c.InitCheck = cgroup1.AllowAny
	return nil
}

// mapPath is a cgroup1.Path from a controller→path map.
func mapPath(paths map[string]string) cgroup1.Path {
	return func(name cgroup1.Name) (string, error) {
		if p, ok := paths[string(name)]; ok {
			return p, nil
		}
		return "", cgroup1.ErrControllerNotActive
	}
}

// Leave moves the process back to the cgroup(s) it was in before Join, so that the pod's
// cgroup can be removed. Safe to call twice.
func (g *Group) Leave() error {
	var err error
	switch {
	case g.origV2 != nil:
		err = g.origV2.AddProc(uint64(g.pid))
	case g.origV1 != nil:
		err = g.origV1.AddProc(uint64(g.pid))
	}
	if err != nil {
		return fmt.Errorf("pod cgroup: move pid %d back to its own cgroup: %w", g.pid, err)
	}
	return nil
}

// Stats returns the cgroup's figures: *cgroup1/stats.Metrics on v1 hosts,
// *cgroup2/stats.Metrics on v2 (containerd's CRI decodes either as a sandbox's metrics).
func (g *Group) Stats() (any, error) {
	if g.v2 != nil {
		return g.v2.Stat()
	}
	if g.v1 != nil {
		return g.v1.Stat(cgroup1.IgnoreNotExist)
	}
	return nil, fmt.Errorf("pod cgroup: not created")
}

// Remove removes the cgroup recorded in podDir (by Join), waiting a moment for processes
// that are dying to leave it, and then the record. No record: nothing to do. Only the
// cgroup Join made goes, never its parents (the kubelet's pod cgroup).
func Remove(podDir string) error {
	recPath := filepath.Join(podDir, RecordFile)
	data, err := os.ReadFile(recPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pod cgroup: %w", err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("pod cgroup: parse %s: %w", recPath, err)
	}
	del, where, err := deleter(rec)
	if err != nil {
		return fmt.Errorf("pod cgroup: %s: %w", where, err)
	}
	deadline := time.Now().Add(removeWait)
	for {
		err = del()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("pod cgroup: remove %s: %w", where, err)
	}
	if err := os.Remove(recPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pod cgroup: %w", err)
	}
	return nil
}

// deleter returns a function that removes the recorded cgroup (nil once it is gone) and a
// description of it for errors.
func deleter(rec record) (func() error, string, error) {
	switch rec.Mode {
	case "v2":
		if _, err := ResolvePath(rec.V2); err != nil {
			return nil, rec.V2, err
		}
		where := filepath.Join(unifiedMount, rec.V2)
		return func() error {
			if _, err := os.Stat(where); errors.Is(err, os.ErrNotExist) {
				return nil
			}
			m, err := cgroup2.Load(rec.V2, cgroup2.WithMountpoint(unifiedMount))
			if err != nil {
				return err
			}
			return m.Delete()
		}, where, nil
	case "v1":
		var names []string
		for n, p := range rec.V1 {
			if _, err := ResolvePath(p); err != nil {
				return nil, n + ":" + p, err
			}
			names = append(names, n+":"+p)
		}
		sort.Strings(names)
		where := fmt.Sprint(names)
		return func() error {
			cg, err := cgroup1.Load(mapPath(rec.V1), allowAny)
			if errors.Is(err, cgroup1.ErrCgroupDeleted) {
				return nil
			}
			if err != nil {
				return err
			}
			return cg.Delete()
		}, where, nil
	}
	return nil, "record", fmt.Errorf("unknown cgroup mode %q", rec.Mode)
}
