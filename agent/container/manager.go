// Package container runs the guest's containers with runc's libcontainer: create, start,
// exec, signal, wait, stdio, stats, pause/resume, update, and exit/OOM events.
//
// A Manager owns every container of the sandbox. Each container has an init process (exec id
// "") and any number of exec'd processes; every process has its own stdio (pipes or a
// terminal) buffered by the agent, and its exit goes into the Manager's event queue. The
// agent binary must call InitIfRequested first thing in main, because libcontainer
// re-executes it as "init" inside each new container.
package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/storage"
	"github.com/veil-runtime/veil/agent/unseal"
)

// idPattern is the form of container and exec ids. It is compiled on first use: its bounded
// repeat makes a large program, and this package is initialised in every container process
// (libcontainer re-executes the agent as their init).
var idPattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`) })

// ValidateID returns an InvalidArgument error naming what (for example "container_id") unless
// id has the form of a container or exec id.
func ValidateID(what, id string) error {
	if !idPattern().MatchString(id) {
		return fmt.Errorf("%s %q must match %s: %w", what, id, idPattern(), errdefs.ErrInvalidArgument)
	}
	return nil
}

// Manager owns every container of the sandbox. Its methods are safe for concurrent use.
type Manager struct {
	root   string // libcontainer state directory
	events *eventQueue

	mu         sync.Mutex
	containers map[string]*ctr // a nil value reserves an id whose Create is under way
	sandbox    string          // the sandbox container's id (SetSandbox)

	paths *storage.Table // mounts storages and roots, resolves the host's paths

	// unsealer replaces sealed env values and files (SetUnsealer); without a KBS it refuses
	// every sealed value, so none is ever left in place.
	unsealer *unseal.Unsealer
}

// SetUnsealer sets what unseals the containers' sealed secrets. Call it before serving.
func (m *Manager) SetUnsealer(u *unseal.Unsealer) {
	if u == nil {
		u = &unseal.Unsealer{}
	}
	m.unsealer = u
}

// NewManager returns a Manager keeping libcontainer state under root, whose containers'
// storages, root file systems and bind sources paths mounts.
func NewManager(root string, paths *storage.Table) (*Manager, error) {
	if root == "" {
		return nil, fmt.Errorf("container state directory is empty: %w", errdefs.ErrInvalidArgument)
	}
	if paths == nil {
		return nil, fmt.Errorf("container manager: no storage table: %w", errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create container state directory: %w", err)
	}
	return &Manager{
		root:       root,
		events:     newEventQueue(maxQueuedEvents),
		containers: make(map[string]*ctr),
		paths:      paths,
		unsealer:   &unseal.Unsealer{},
	}, nil
}

// reserve claims id for a Create under way.
func (m *Manager) reserve(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.containers[id]; ok {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	m.containers[id] = nil
	return nil
}

// commit replaces the reservation of c.id with c; release drops a reservation or entry.
func (m *Manager) commit(c *ctr) {
	m.mu.Lock()
	m.containers[c.id] = c
	m.mu.Unlock()
}

func (m *Manager) release(id string) {
	m.mu.Lock()
	delete(m.containers, id)
	m.mu.Unlock()
}

// get returns the container id or a NotFound error.
func (m *Manager) get(id string) (*ctr, error) {
	m.mu.Lock()
	c, ok := m.containers[id]
	m.mu.Unlock()
	switch {
	case !ok:
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	case c == nil:
		return nil, fmt.Errorf("container %q is still being created: %w", id, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// IDs returns the ids of the containers the Manager holds.
func (m *Manager) IDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.containers))
	for id, c := range m.containers {
		if c != nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// Create makes container id from the OCI spec (JSON) without starting its process: it mounts
// storages, the root file system and the bind mounts' sources where the agent chooses
// (storage.Table.PrepareContainer), creates the libcontainer container in cgroup /veil/<id>
// and runs its init up to the point where Start lets it exec. stdin keeps a stdin pipe open
// for WriteStdin. On any failure nothing is left behind: no state, cgroup, mount or process.
func (m *Manager) Create(ctx context.Context, id string, specJSON []byte, stdin bool, storages []*api.Storage) error {
	return m.create(ctx, id, func() (*specs.Spec, error) { return parseSpec(specJSON) }, stdin, storages)
}

// CreateSpec is Create from a spec already decoded (the one the policy judged,
// policy.SpecFrom), checked as Create checks it. The manager then owns spec: it fills in
// what the guest decides (cgroup, bind sources) and the caller must not use it again.
func (m *Manager) CreateSpec(ctx context.Context, id string, spec *specs.Spec, stdin bool, storages []*api.Storage) error {
	if spec == nil {
		return invalid("is empty")
	}
	return m.create(ctx, id, func() (*specs.Spec, error) { return checkSpec(spec) }, stdin, storages)
}

// create is Create with the spec from decode, called once the id is reserved.
func (m *Manager) create(ctx context.Context, id string, decode func() (*specs.Spec, error), stdin bool, storages []*api.Storage) (retErr error) {
	if err := ValidateID("container_id", id); err != nil {
		return err
	}
	// A duplicate id is reported as such whatever else is wrong with the request.
	if err := m.reserve(id); err != nil {
		return err
	}
	var undo cleanups
	defer func() {
		if retErr != nil {
			undo.run()
			m.release(id)
		}
	}()
	spec, err := decode()
	if err != nil {
		return err
	}
	if err := m.sandboxNamespaces(id, spec.Linux); err != nil {
		return err
	}
	unmount, err := m.paths.PrepareContainer(ctx, id, spec, storages)
	if err != nil {
		return err
	}
	undo.add(unmount)
	// Sealed secrets are unsealed once the bind sources are the agent's own paths.
	unsealed, err := m.unsealer.Container(ctx, spec, m.paths.Path(api.ContainersDir)+"/"+id)
	if err != nil {
		return err
	}
	undo.add(unsealed)
	prepared := unmount
	unmount = func() error { return errors.Join(unsealed(), prepared()) }
	cfg, err := libcontainerConfig(id, spec)
	if err != nil {
		return err
	}
	if err := checkExecutable(cfg, spec.Process.Args[0], spec.Process.Cwd, spec.Process.Env); err != nil {
		return err
	}
	lc, err := libcontainer.Create(m.root, id, cfg)
	if err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	undo.add(func() error { return destroy(lc) })
	c := &ctr{id: id, lc: lc, unmount: unmount, procs: make(map[string]*process), events: m.events}
	p, err := newProcess(c, "", initProcess(spec), spec.Process.Terminal, stdin)
	if err != nil {
		return err
	}
	if err := c.start(p, &undo); err != nil {
		return fmt.Errorf("create container %s: %w", id, err)
	}
	c.watchOOM()
	m.commit(c)
	return nil
}

// Start lets the init process of a created container exec its program.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	st, err := c.lc.Status()
	if err != nil {
		return fmt.Errorf("container %s status: %w", id, err)
	}
	if st != libcontainer.Created {
		return fmt.Errorf("container %s is %s, not created: %w", id, st, errdefs.ErrFailedPrecondition)
	}
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// Remove stops container id and deletes it: SIGTERM to its init, SIGKILL to every process
// once timeout has passed (at once when timeout is 0), then it destroys the libcontainer
// state and cgroup, closes the stdio and unmounts the container's storages.
func (m *Manager) Remove(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if !c.beginRemove() {
		return fmt.Errorf("container %s is already being removed: %w", id, errdefs.ErrFailedPrecondition)
	}
	if err := c.stop(ctx, timeout); err != nil {
		c.endRemove()
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	err = c.teardown()
	m.release(id)
	if err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// RemoveAll removes every container (for DestroySandbox) and reports every failure.
func (m *Manager) RemoveAll(ctx context.Context, timeout time.Duration) error {
	var errs []error
	for _, id := range m.IDs() {
		if err := m.Remove(ctx, id, timeout); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
