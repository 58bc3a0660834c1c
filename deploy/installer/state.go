package installer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/veil-runtime/veil/deploy/installer/containerdcfg"
	"github.com/veil-runtime/veil/deploy/installer/host"
	"github.com/veil-runtime/veil/deploy/installer/internal/atomicfile"
)

// State is what an install left on the host, for the next install and for uninstall:
// InstallDir/.veil-deploy/state.json.
type State struct {
	// Files are the installed files, relative to InstallDir.
	Files []string `json:"files"`
	// Handlers are the runtime handlers the drop-in declares.
	Handlers []string `json:"handlers"`
	// Containerd is what was changed in containerd's configuration (nil: nothing yet).
	Containerd *containerdcfg.State `json:"containerd,omitempty"`
	// RestartPending: containerd's configuration changed and containerd has not been
	// restarted since (the restart failed, or the installer stopped before it).
	RestartPending bool `json:"restartPending,omitempty"`
	// Snapshotter: veil-snapshotter's systemd unit was installed (snapshotter.go).
	Snapshotter bool `json:"snapshotter,omitempty"`
}

func statePath(h host.Host) string { return h.Path(InstallDir + "/" + StateRel) }

// LoadState reads the install state; nil when there is none.
func LoadState(h host.Host) (*State, error) {
	data, err := os.ReadFile(statePath(h))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("install state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("install state %s: %w", statePath(h), err)
	}
	return &s, nil
}

func (s *State) save(h host.Host) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("install state: %w", err)
	}
	if err := atomicfile.WriteFile(statePath(h), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("install state: %w", err)
	}
	return nil
}
