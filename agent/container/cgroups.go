package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fscommon"
	"github.com/opencontainers/runc/libcontainer"

	"github.com/veil-runtime/veil/agent/api"
)

// memoryCgroupPath returns the directory of lc's memory cgroup (v1) or of its cgroup (v2).
func memoryCgroupPath(lc *libcontainer.Container) string {
	st, err := lc.State()
	if err != nil {
		return ""
	}
	if p, ok := st.CgroupPaths["memory"]; ok {
		return p
	}
	return st.CgroupPaths[""]
}

// oomKills reads how many processes the OOM killer has killed in the memory cgroup dir:
// oom_kill of memory.events (v2) or of memory.oom_control (v1).
func oomKills(dir string) (uint64, error) {
	if dir == "" {
		return 0, fmt.Errorf("no memory cgroup: %w", errdefs.ErrNotFound)
	}
	n, err := fscommon.GetValueByKey(dir, "memory.events", "oom_kill")
	if errors.Is(err, os.ErrNotExist) {
		n, err = fscommon.GetValueByKey(dir, "memory.oom_control", "oom_kill")
	}
	return n, err
}

// oomKilledSince reports whether the cgroup's OOM kill count has grown past before. The
// kernel counts a kill just after it sends SIGKILL, so a reaped victim may, rarely, be seen
// a moment before its kill is counted: look a few times.
func oomKilledSince(dir string, before uint64) bool {
	for range 10 {
		if n, err := oomKills(dir); err != nil || n > before {
			return err == nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// watchOOM queues an OOM event each time the OOM killer kills in c's cgroup. It ends when the
// cgroup is emptied (v2) or removed (v1).
func (c *ctr) watchOOM() {
	ch, err := c.lc.NotifyOOM()
	if err != nil {
		log.L.WithError(err).WithField("container", c.id).Warn("no OOM events for this container")
		return
	}
	dir := memoryCgroupPath(c.lc)
	last, _ := oomKills(dir)
	v2 := cgroups.IsCgroup2UnifiedMode()
	go func() {
		for range ch {
			if v2 {
				// memory.events changes for other reasons too; only oom_kill counts.
				n, err := oomKills(dir)
				if err != nil || n <= last {
					continue
				}
				last = n
			} else {
				// The v1 notification comes just before the kill: it is the OOM itself.
				if oomKilledSince(dir, last) {
					last, _ = oomKills(dir)
				}
			}
			c.events.push(&api.Event{Type: api.Event_OOM, ContainerId: c.id, TimestampUnixNano: time.Now().UnixNano()})
		}
	}()
}

// Stats returns the cgroup statistics of container id.
func (m *Manager) Stats(ctx context.Context, id string) (*api.StatsContainerResponse, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	st, err := c.lc.Stats()
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", id, err)
	}
	resp := &api.StatsContainerResponse{}
	if cg := st.CgroupStats; cg != nil {
		resp.CpuUsageNs = cg.CpuStats.CpuUsage.TotalUsage
		resp.CpuUserNs = cg.CpuStats.CpuUsage.UsageInUsermode
		resp.CpuSystemNs = cg.CpuStats.CpuUsage.UsageInKernelmode
		resp.MemoryUsageBytes = cg.MemoryStats.Usage.Usage
		resp.MemoryLimitBytes = cg.MemoryStats.Usage.Limit
		resp.MemoryMaxUsageBytes = cg.MemoryStats.Usage.MaxUsage
		resp.PidsCurrent = cg.PidsStats.Current
		resp.PidsLimit = cg.PidsStats.Limit
	}
	resp.OomKills, _ = oomKills(memoryCgroupPath(c.lc))
	return resp, nil
}

// Pause freezes every process of container id.
func (m *Manager) Pause(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if err := c.lc.Pause(); err != nil {
		return fmt.Errorf("pause container %s: %w", id, stateError(err))
	}
	return nil
}

// Resume thaws a paused container id.
func (m *Manager) Resume(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if err := c.lc.Resume(); err != nil {
		return fmt.Errorf("resume container %s: %w", id, stateError(err))
	}
	return nil
}

// stateError marks libcontainer's wrong-state errors as FailedPrecondition.
func stateError(err error) error {
	if errors.Is(err, libcontainer.ErrNotRunning) || errors.Is(err, libcontainer.ErrNotPaused) ||
		errors.Is(err, libcontainer.ErrPaused) || errors.Is(err, libcontainer.ErrRunning) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	return err
}

// Update changes the cgroup limits of container id; zero fields keep their value, -1
// removes a memory, swap, CPU quota or pids limit.
func (m *Manager) Update(ctx context.Context, id string, r *api.Resources) error {
	if r == nil {
		return fmt.Errorf("resources are missing: %w", errdefs.ErrInvalidArgument)
	}
	c, err := m.get(id)
	if err != nil {
		return err
	}
	cfg := c.lc.Config()
	cg := *cfg.Cgroups
	res := *cg.Resources
	cg.Resources, cfg.Cgroups = &res, &cg
	setIf(&res.Memory, r.GetMemoryLimitBytes())
	setIf(&res.MemorySwap, r.GetMemorySwapBytes())
	setIf(&res.CpuShares, r.GetCpuShares())
	setIf(&res.CpuQuota, r.GetCpuQuota())
	setIf(&res.CpuPeriod, r.GetCpuPeriod())
	setIf(&res.CpusetCpus, r.GetCpusetCpus())
	if n := r.GetPidsLimit(); n != 0 {
		res.PidsLimit = &n
	}
	if err := c.lc.Set(cfg); err != nil {
		return fmt.Errorf("update resources of container %s: %w: %w", id, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// setIf sets *dst to v unless v is the zero value.
func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}
