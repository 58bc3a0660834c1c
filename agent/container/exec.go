package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/veil-runtime/veil/agent/api"
)

// maxExitedExecs is how many exited exec'd processes a container keeps for Wait and reads;
// beyond it the oldest ones whose output has been read are forgotten.
const maxExitedExecs = 128

// Exec starts process execID in the running container id. Empty capabilities give the
// process those of the container's init; no_new_privileges=false keeps the container's
// setting (it cannot turn it off).
func (m *Manager) Exec(ctx context.Context, id, execID string, ap *api.Process) error {
	if err := ValidateID("exec_id", execID); err != nil {
		return err
	}
	lp, err := execProcess(ap)
	if err != nil {
		return err
	}
	// An exec carries the container's env again (CRI copies it): its sealed values are
	// unsealed the same way.
	lp.Env = slices.Clone(lp.Env)
	if err := m.unsealer.Env(ctx, lp.Env, "process.env"); err != nil {
		return fmt.Errorf("exec %s in container %s: %w", execID, id, err)
	}
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if st, err := c.lc.Status(); err != nil || st != libcontainer.Running {
		return fmt.Errorf("container %s is %v, not running: %w", id, st, errdefs.ErrFailedPrecondition)
	}
	cfg := c.lc.Config()
	if err := checkExecutable(&cfg, lp.Args[0], lp.Cwd, lp.Env); err != nil {
		return err
	}
	if err := c.reserveExec(execID); err != nil {
		return err
	}
	p, err := newProcess(c, execID, lp, ap.GetTerminal(), ap.GetStdin())
	if err == nil {
		err = c.start(p, new(cleanups))
	}
	if err != nil {
		c.mu.Lock()
		delete(c.procs, execID)
		c.mu.Unlock()
		return fmt.Errorf("exec %s in container %s: %w", execID, id, err)
	}
	c.pruneExited()
	return nil
}

// execProcess maps an API process onto a libcontainer one.
func execProcess(ap *api.Process) (*libcontainer.Process, error) {
	if ap == nil || len(ap.GetArgs()) == 0 || ap.GetArgs()[0] == "" {
		return nil, fmt.Errorf("process.args is empty: %w", errdefs.ErrInvalidArgument)
	}
	lp := &libcontainer.Process{
		Args: ap.GetArgs(),
		Env:  ap.GetEnv(),
		Cwd:  cwdOrRoot(ap.GetCwd()),
		UID:  int(ap.GetUid()),
		GID:  int(ap.GetGid()),
	}
	for _, g := range ap.GetAdditionalGids() {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if ap.GetNoNewPrivileges() {
		yes := true
		lp.NoNewPrivileges = &yes
	}
	if caps := ap.GetCapabilities(); len(caps) > 0 {
		known := capabilities.KnownCapabilities()
		for i, name := range caps {
			if !slices.Contains(known, name) {
				return nil, fmt.Errorf("process.capabilities[%d] %q is not a known capability: %w", i, name, errdefs.ErrInvalidArgument)
			}
		}
		lp.Capabilities = &configs.Capabilities{Bounding: caps, Effective: caps, Permitted: caps}
	}
	return lp, nil
}

// reserveExec claims execID in c, which must not be removing.
func (c *ctr) reserveExec(execID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing {
		return fmt.Errorf("container %s is being removed: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if _, ok := c.procs[execID]; ok {
		return fmt.Errorf("exec_id %q in container %s: %w", execID, c.id, errdefs.ErrAlreadyExists)
	}
	c.procs[execID] = nil
	return nil
}

// pruneExited forgets the oldest exited exec'd processes whose output has been read, beyond
// maxExitedExecs.
func (c *ctr) pruneExited() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var old []*process
	for id, p := range c.procs {
		if id != "" && p != nil && p.exited() && p.stdout.drained() && p.stderr.drained() {
			old = append(old, p)
		}
	}
	if len(old) <= maxExitedExecs {
		return
	}
	sort.Slice(old, func(i, j int) bool { return old[i].status.ExitedAtUnixNano < old[j].status.ExitedAtUnixNano })
	for _, p := range old[:len(old)-maxExitedExecs] {
		p.closeAll()
		delete(c.procs, p.execID)
	}
}

// Signal sends sig to process execID of container id, or to every process of the container
// when all is set.
func (m *Manager) Signal(ctx context.Context, id, execID string, sig syscall.Signal, all bool) error {
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("signal %d is out of range 1-64: %w", sig, errdefs.ErrInvalidArgument)
	}
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if all {
		return c.signalAll(sig)
	}
	p, err := c.process(execID)
	if err != nil {
		return err
	}
	if p.exited() {
		return fmt.Errorf("process %q of container %s has exited: %w", execID, id, errdefs.ErrNotFound)
	}
	if execID == "" {
		err = c.lc.Signal(sig) // thaws a paused container for SIGKILL
	} else {
		err = p.lc.Signal(sig)
	}
	if err != nil {
		return fmt.Errorf("signal process %q of container %s: %w", execID, id, err)
	}
	return nil
}

// signalAll sends sig to every process in c's cgroup.
func (c *ctr) signalAll(sig syscall.Signal) error {
	pids, err := c.lc.Processes()
	if err != nil {
		return fmt.Errorf("list processes of container %s: %w", c.id, err)
	}
	var errs []error
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("signal pid %d: %w", pid, err))
		}
	}
	if st, err := c.lc.Status(); err == nil && st == libcontainer.Paused && sig == unix.SIGKILL {
		_ = c.lc.Resume() // a frozen process dies only once thawed
	}
	return errors.Join(errs...)
}

// Wait waits until process execID of container id has exited, or ctx is done.
func (m *Manager) Wait(ctx context.Context, id, execID string) (*api.WaitProcessResponse, error) {
	p, err := m.lookup(id, execID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return proto.Clone(p.status).(*api.WaitProcessResponse), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ListProcesses returns the processes in container id's cgroup, with the exec id of those the
// agent started.
func (m *Manager) ListProcesses(ctx context.Context, id string) ([]*api.ProcessInfo, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	pids, err := c.lc.Processes()
	if err != nil {
		return nil, fmt.Errorf("list processes of container %s: %w", id, err)
	}
	execIDs := make(map[int]string)
	for _, p := range c.processes() {
		if !p.exited() {
			execIDs[p.pid] = p.execID
		}
	}
	infos := make([]*api.ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		infos = append(infos, &api.ProcessInfo{Pid: uint32(pid), ExecId: execIDs[pid], Args: cmdline(pid)})
	}
	return infos, nil
}

// cmdline returns the arguments of pid, or nil when they cannot be read.
func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	var args []string
	for _, a := range bytes.Split(bytes.TrimSuffix(b, []byte{0}), []byte{0}) {
		args = append(args, string(a))
	}
	return args
}
