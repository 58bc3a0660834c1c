package snapshotter

import (
	"context"
	"fmt"
	"maps"
	"os"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	snpkg "github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// LabelRemote marks a remote snapshot: a layer containerd did not fetch, which only a
// guest-pull VM has (value "true").
const LabelRemote = "io.veil.snapshot.remote"

// remote records the layer snapshot target (a chain ID) as a committed, empty snapshot whose
// parent is parent, with the unpacker's labels (target, diff ID, and, with CRI's snapshot
// annotations, the image reference and the layer and manifest digests) and LabelRemote, and
// returns ErrAlreadyExists so that containerd's unpacker skips the layer. The active
// extraction snapshot key is never kept: it exists only inside the transaction.
func (s *Snapshotter) remote(ctx context.Context, key, parent, target string, labels map[string]string) error {
	labels = maps.Clone(labels)
	labels[LabelRemote] = "true"
	td, err := s.tempDir()
	if err != nil {
		return err
	}
	var path string
	exists := false
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		if _, info, _, err := storage.GetInfo(ctx, target); err == nil {
			if info.Kind == snapshots.KindCommitted && info.Parent == parent {
				exists = true
				return nil
			}
			return fmt.Errorf("snapshot %q exists as %s with parent %q, not as a layer on %q: %w",
				target, info.Kind, info.Parent, parent, errdefs.ErrFailedPrecondition)
		} else if !errdefs.IsNotFound(err) {
			return err
		}
		sn, err := storage.CreateSnapshot(ctx, snapshots.KindActive, key, parent, snapshots.WithLabels(labels))
		if err != nil {
			return err
		}
		if _, err := storage.CommitActive(ctx, key, target, snapshots.Usage{}, snapshots.WithLabels(labels)); err != nil {
			return err
		}
		path = s.dir(sn.ID)
		return os.Rename(td, path)
	})
	if err != nil || exists {
		_ = os.RemoveAll(td)
	}
	if err != nil {
		if path != "" {
			_ = os.RemoveAll(path)
		}
		return fmt.Errorf("remote snapshot %q (layer %s of %s, parent %q): %w", target,
			orUnknown(labels[snpkg.TargetLayerDigestLabel]), orUnknown(labels[snpkg.TargetRefLabel]), parent, err)
	}
	log.G(ctx).WithFields(log.Fields{
		"snapshot": target, "parent": parent, "exists": exists,
		"image": labels[snpkg.TargetRefLabel], "layer": labels[snpkg.TargetLayerDigestLabel],
	}).Debug("remote snapshot: the layer is left to the guest")
	return fmt.Errorf("remote snapshot %q: %w", target, errdefs.ErrAlreadyExists)
}

// IsRemote reports whether info is a remote snapshot.
func IsRemote(info snapshots.Info) bool { return info.Labels[LabelRemote] == "true" }

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
