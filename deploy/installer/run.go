package installer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// RunOptions configure Run.
type RunOptions struct {
	// ReadyFile is created once the node is installed and labelled (the DaemonSet's
	// readiness probe looks for it) and removed when Run ends.
	ReadyFile string
	// UninstallOnExit uninstalls when ctx ends (SIGTERM). Off by default: a DaemonSet's pod
	// is also stopped on every upgrade, node drain of daemon pods and eviction, and a node's
	// running Veil pods must not lose their runtime then.
	UninstallOnExit bool
	// UninstallTimeout bounds that uninstall (default 50 s: inside the pod's grace period).
	UninstallTimeout time.Duration
}

// Run is what the DaemonSet's container runs: install, label the node, report ready, then
// wait for ctx to end (SIGTERM) and, when asked, uninstall.
func (in *Installer) Run(ctx context.Context, ro RunOptions) error {
	p, err := in.Install(ctx)
	if err != nil {
		return err
	}
	if err := in.SetLabels(ctx, p); err != nil {
		return err
	}
	if ro.ReadyFile != "" {
		if err := os.MkdirAll(filepath.Dir(ro.ReadyFile), 0o755); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
		if err := os.WriteFile(ro.ReadyFile, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
			return fmt.Errorf("ready file: %w", err)
		}
		defer os.Remove(ro.ReadyFile)
	}
	in.logf("installed; waiting for SIGTERM (uninstall on exit: %v)", ro.UninstallOnExit)
	<-ctx.Done()
	if !ro.UninstallOnExit {
		in.logf("stopping; Veil stays installed on this node")
		return nil
	}
	if ro.ReadyFile != "" {
		os.Remove(ro.ReadyFile)
	}
	timeout := ro.UninstallTimeout
	if timeout == 0 {
		timeout = 50 * time.Second
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	in.logf("stopping: uninstalling")
	return in.Uninstall(uctx)
}

// DefaultReadyFile is where run reports readiness (in the installer's container).
const DefaultReadyFile = "/run/veil-deploy/ready"
