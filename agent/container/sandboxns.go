package container

import (
	"fmt"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
)

// nsFiles are the /proc/<pid>/ns entries of the namespaces a container may share with the
// pod's sandbox container.
var nsFiles = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace: "pid",
	specs.IPCNamespace: "ipc",
	specs.UTSNamespace: "uts",
}

// SetSandbox names the pod's sandbox container: the one whose namespaces the paths below
// api.SandboxNamespaceDir refer to. The agent calls it from CreateSandbox, with the sandbox
// id, which is the id of the sandbox container too.
func (m *Manager) SetSandbox(id string) {
	m.mu.Lock()
	m.sandbox = id
	m.mu.Unlock()
}

// sandboxNamespaces resolves the namespace paths of a spec that name the sandbox container's
// namespaces (api.SandboxNamespaceDir/<type>) to that container's init process. Only pid, ipc
// and uts can be shared, each only under its own name, and only once the sandbox container
// exists.
func (m *Manager) sandboxNamespaces(id string, l *specs.Linux) error {
	for i := range l.Namespaces {
		ns := &l.Namespaces[i]
		name, ok := strings.CutPrefix(ns.Path, api.SandboxNamespaceDir+"/")
		if !ok {
			continue
		}
		file, shareable := nsFiles[ns.Type]
		if !shareable || name != string(ns.Type) {
			return invalid("linux.namespaces[%d]: the %s namespace cannot join %s", i, ns.Type, ns.Path)
		}
		pid, err := m.sandboxPid(id)
		if err != nil {
			return invalid("linux.namespaces[%d] (%s): %v", i, ns.Path, err)
		}
		ns.Path = fmt.Sprintf("/proc/%d/ns/%s", pid, file)
	}
	return nil
}

// sandboxPid returns the pid of the sandbox container's init process.
func (m *Manager) sandboxPid(id string) (int, error) {
	m.mu.Lock()
	sb := m.sandbox
	c := m.containers[sb]
	m.mu.Unlock()
	switch {
	case sb == "":
		return 0, fmt.Errorf("no sandbox was created")
	case sb == id:
		return 0, fmt.Errorf("the sandbox container cannot join its own namespaces")
	case c == nil:
		return 0, fmt.Errorf("the sandbox container %s does not exist", sb)
	}
	// A stopped sandbox's pid may belong to another process by now (the agent's own, in
	// the guest's root namespaces): only a live init is joined.
	if status, err := c.lc.Status(); err != nil || status == libcontainer.Stopped {
		return 0, fmt.Errorf("the sandbox container %s is not running", sb)
	}
	st, err := c.lc.State()
	if err != nil {
		return 0, fmt.Errorf("sandbox container %s: %w", sb, err)
	}
	if st.InitProcessPid <= 0 {
		return 0, fmt.Errorf("sandbox container %s has no init process", sb)
	}
	return st.InitProcessPid, nil
}
