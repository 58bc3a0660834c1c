package installer

import (
	"context"
	"fmt"
	"os"

	"github.com/veil-runtime/veil/deploy/installer/containerdcfg"
	"github.com/veil-runtime/veil/deploy/installer/hostcheck"
	"github.com/veil-runtime/veil/deploy/installer/internal/atomicfile"
	"github.com/veil-runtime/veil/deploy/installer/payload"
	"github.com/veil-runtime/veil/snapshotter/snapconfig"
)

// veil-snapshotter on the node (Options.Snapshotter, docs/snapshotter.md): its binary comes
// with the payload, a systemd unit of the host runs it (it must outlive this installer's pod,
// which stops on every upgrade and drain, and start before containerd at boot, as
// nydus-snapshotter's deploy script does for CoCo), and the drop-in makes it the guest-pull
// handlers' snapshotter.
const (
	SnapshotterRel  = "bin/veil-snapshotter"
	SnapshotterUnit = "veil-snapshotter.service"
	// SnapshotterUnitPath is the unit file on the host.
	SnapshotterUnitPath = "/etc/systemd/system/" + SnapshotterUnit
)

// UnitManager starts and stops systemd units of the host (host.Units; tests fake it).
type UnitManager interface {
	EnableStart(ctx context.Context, unit string) error
	StopDisable(ctx context.Context, unit string) error
}

// checkSnapshotter refuses the snapshotter where it cannot work, before anything changes.
func (in *Installer) checkSnapshotter(m *payload.Manifest, r *hostcheck.Report) error {
	if !m.Has(SnapshotterRel) {
		return fmt.Errorf("--snapshotter: the payload has no %s (built without veil-deploy payload --snapshotter)", SnapshotterRel)
	}
	if n := in.h.InitName(); n != "systemd" {
		return fmt.Errorf("--snapshotter: veil-snapshotter runs as a systemd unit, and the host's pid 1 is %q, not systemd", n)
	}
	if v := r.ContainerdVersion; v.Major < 2 {
		return fmt.Errorf("--snapshotter: veil-snapshotter needs containerd 2.x, this node runs %d.%d "+
			"(docs/snapshotter.md says what 1.7 and 1.6 can do)", v.Major, v.Minor)
	}
	return nil
}

// withSnapshotter makes veil-snapshotter the snapshotter of spec's guest-pull handlers.
func withSnapshotter(spec *containerdcfg.Spec, installed []Handler) {
	spec.SnapshotterAddress = snapconfig.DefaultAddress
	for i, h := range installed {
		if h.GuestPull {
			spec.Runtimes[i].Snapshotter = snapconfig.Name
		}
	}
}

// startSnapshotter writes the unit (the binary installed under InstallDir) and has systemd
// enable and (re)start it.
func (in *Installer) startSnapshotter(ctx context.Context) error {
	unit := snapconfig.Unit(InstallDir + "/" + SnapshotterRel)
	if err := atomicfile.WriteFile(in.h.Path(SnapshotterUnitPath), []byte(unit), 0o644); err != nil {
		return fmt.Errorf("veil-snapshotter unit: %w", err)
	}
	if err := in.o.Units.EnableStart(ctx, SnapshotterUnit); err != nil {
		return fmt.Errorf("start veil-snapshotter: %w", err)
	}
	in.logf("veil-snapshotter: %s enabled and started (socket %s)", SnapshotterUnitPath, snapconfig.DefaultAddress)
	return nil
}

// removeSnapshotter stops and disables the unit and removes its file and the snapshotter's
// root (its snapshots are empty remote layers and the containers' scratch roots, which
// containerd no longer names).
func (in *Installer) removeSnapshotter(ctx context.Context) error {
	if in.h.Exists(SnapshotterUnitPath) {
		if err := in.o.Units.StopDisable(ctx, SnapshotterUnit); err != nil {
			return fmt.Errorf("stop veil-snapshotter: %w", err)
		}
		if _, err := atomicfile.Remove(in.h.Path(SnapshotterUnitPath)); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(in.h.Path(snapconfig.DefaultRoot)); err != nil {
		return fmt.Errorf("remove %s: %w", snapconfig.DefaultRoot, err)
	}
	in.logf("veil-snapshotter: stopped; %s and %s removed", SnapshotterUnitPath, snapconfig.DefaultRoot)
	return nil
}
