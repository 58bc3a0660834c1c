package installer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/veil-runtime/veil/deploy/installer/containerdcfg"
	"github.com/veil-runtime/veil/deploy/installer/hostcheck"
	"github.com/veil-runtime/veil/deploy/installer/internal/atomicfile"
	"github.com/veil-runtime/veil/deploy/installer/nodelabel"
	"github.com/veil-runtime/veil/deploy/installer/payload"
)

// ErrPodsRunning refuses an uninstall while Veil pods run on the node.
var ErrPodsRunning = errors.New("Veil pods still run on this node")

// Uninstall removes the node's labels (first, so that no new Veil pod is scheduled here),
// Veil's runtimes from containerd (restoring its configuration, then restarting it) and
// every installed file. With Veil shims running it refuses, unless Force. Running it again
// after a failure finishes the job.
func (in *Installer) Uninstall(ctx context.Context) error {
	pids, err := in.h.VeilShims()
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		if !in.o.Force {
			return fmt.Errorf("%w: %d containerd-shim-veil-v2 processes (pids %v): delete those pods or drain the node "+
				"first, or uninstall --force (their VMs keep running without the runtime's files)",
				ErrPodsRunning, len(pids), pids)
		}
		in.logf("--force: uninstalling with %d Veil shim(s) running (pids %v)", len(pids), pids)
	}
	// A label that cannot be removed (the RBAC deleted together with the DaemonSet) does not
	// stop the rest; it is reported at the end.
	labelErr := in.removeLabels(ctx)
	if labelErr != nil {
		in.logf("node labels not removed: %v", labelErr)
	}
	if in.o.ContainerdConfig == "" {
		in.configPath(hostcheck.Probe(ctx, in.h))
	}
	st, err := LoadState(in.h)
	if err != nil {
		return err
	}
	if st == nil {
		// Lost, or never installed: the default drop-in and its import go all the same.
		st = &State{Containerd: &containerdcfg.State{Config: in.o.ContainerdConfig, DropIn: containerdcfg.DropInFor(in.o.ContainerdConfig)}}
	}
	if err := in.revertContainerd(ctx, st); err != nil {
		return err
	}
	if st.Snapshotter {
		// containerd no longer names it: stop it, remove its unit and its snapshots.
		if err := in.removeSnapshotter(ctx); err != nil {
			return err
		}
	}
	files := map[string]bool{}
	for _, f := range st.Files {
		files[f] = true
	}
	if m, err := payload.Read(in.o.Payload); err == nil {
		for _, f := range m.Paths() {
			files[f] = true
		}
	}
	var list []string
	for f := range files {
		list = append(list, f)
	}
	sort.Strings(list)
	removed, err := payload.Remove(in.h.Path(InstallDir), list)
	if err != nil {
		return err
	}
	if _, err := atomicfile.Remove(statePath(in.h)); err != nil {
		return err
	}
	os.Remove(filepath.Dir(statePath(in.h))) // when empty
	os.Remove(in.h.Path(InstallDir))
	in.logf("removed %d files from %s", len(removed), InstallDir)
	return labelErr
}

// revertContainerd takes Veil's runtimes out of containerd's configuration and restarts it;
// the state records a restart still owed, so that a failed one is retried.
func (in *Installer) revertContainerd(ctx context.Context, st *State) error {
	if st.Containerd != nil {
		changed, notes, err := containerdcfg.Revert(in.h, st.Containerd)
		for _, n := range notes {
			in.logf("note: %s", n)
		}
		if err != nil {
			return err
		}
		if changed {
			in.logf("containerd: Veil's runtimes removed from its configuration")
		}
		st.Containerd = nil
		st.RestartPending = st.RestartPending || changed
		if in.h.Exists(InstallDir) {
			if err := st.save(in.h); err != nil {
				return err
			}
		}
	}
	if !st.RestartPending {
		return nil
	}
	socket := containerdcfg.DefaultSocket
	if cc, err := containerdcfg.Read(in.h, in.o.ContainerdConfig, 2); err == nil {
		socket = cc.Socket()
	}
	if err := in.restart(ctx, socket); err != nil {
		return err
	}
	st.RestartPending = false
	return nil
}

// labeler is the configured Labeler, else an in-cluster client, else nil (not in a pod).
func (in *Installer) labeler() (Labeler, error) {
	if in.o.Labeler != nil {
		return in.o.Labeler, nil
	}
	if in.o.NodeName == "" || os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, nil
	}
	return nodelabel.InCluster(in.o.NodeName, "")
}

// SetLabels labels the node with the plan's labels.
func (in *Installer) SetLabels(ctx context.Context, p *Plan) error {
	l, err := in.labeler()
	if err != nil || l == nil {
		if err == nil {
			in.logf("not in a Kubernetes pod with a node name: node labels skipped")
		}
		return err
	}
	if err := l.Set(ctx, p.Labels); err != nil {
		return err
	}
	in.logf("node %s labelled %v", in.o.NodeName, p.Labels)
	return nil
}

func (in *Installer) removeLabels(ctx context.Context) error {
	l, err := in.labeler()
	if err != nil || l == nil {
		if err == nil {
			in.logf("not in a Kubernetes pod with a node name: node labels left alone")
		}
		return err
	}
	if err := l.Remove(ctx, Labels()); err != nil {
		return err
	}
	in.logf("node %s: veil.dev labels removed", in.o.NodeName)
	return nil
}
