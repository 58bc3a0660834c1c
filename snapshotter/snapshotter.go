// Package snapshotter is veil-snapshotter's logic: a containerd snapshotter, served as a proxy
// plugin over gRPC (serve.go), that keeps a guest-pull pod's image layers off the host.
//
// When containerd's unpacker prepares the extraction snapshot of a layer (a Prepare carrying
// the target label containerd.io/snapshot.ref, the layer's chain ID), the snapshotter records
// a committed, empty "remote" snapshot under that name and answers ErrAlreadyExists: containerd
// then neither downloads nor unpacks the layer (core/unpack skips the fetch of a layer whose
// snapshot exists), and the image in containerd's store holds its index, manifest and config
// only. The guest pulls the layers itself (agent/imagepull), by the digest the shim reads from
// containerd's image store (shim/imagedigest). This is what nydus-snapshotter does in its
// guest-pull (proxy) mode. A container's root on top of remote snapshots is an empty
// directory, bind-mounted: containerd's CRI can mount it to look up users (it finds no
// /etc/passwd, see docs/snapshotter.md), and the Veil shim under guest_pull never shares it.
//
// Every other operation is containerd's native snapshotter (plugins/snapshots/native, whose
// code this follows): snapshots are directories under <root>/snapshots, a child starts as a
// copy of its parent, the metadata is containerd's storage.MetaStore (bbolt) in
// <root>/metadata.db. So a Prepare without the target label (ctr snapshots prepare, a
// container's writable root) behaves as a normal snapshotter and containerd's snapshotter test
// suite passes. Cleanup removes the directories a crash left behind.
//
// The package imports containerd only; neither the shim nor the agent imports it.
package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/log"

	"github.com/veil-runtime/veil/snapshotter/snapconfig"
)

// DefaultRoot is where veil-snapshotter keeps its metadata and snapshot directories
// (snapconfig.DefaultRoot).
const DefaultRoot = snapconfig.DefaultRoot

// Name is the snapshotter's name in containerd's configuration (snapconfig.Name).
const Name = snapconfig.Name

// Snapshotter is a snapshots.Snapshotter and snapshots.Cleaner; see the package comment.
type Snapshotter struct {
	root string
	ms   *storage.MetaStore
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// New opens (or creates, mode 0700) the snapshotter's root.
func New(root string) (*Snapshotter, error) {
	if root == "" || !filepath.IsAbs(root) {
		return nil, fmt.Errorf("snapshotter: root %q is not an absolute path", root)
	}
	if err := os.MkdirAll(filepath.Join(root, "snapshots"), 0o700); err != nil {
		return nil, fmt.Errorf("snapshotter: root %s: %w", root, err)
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, fmt.Errorf("snapshotter: metadata %s: %w", filepath.Join(root, "metadata.db"), err)
	}
	return &Snapshotter{root: root, ms: ms}, nil
}

// Root is the directory the snapshotter keeps everything in.
func (s *Snapshotter) Root() string { return s.root }

// Stat returns the info of an active or committed snapshot.
func (s *Snapshotter) Stat(ctx context.Context, key string) (info snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, info, _, err = storage.GetInfo(ctx, key)
		return err
	})
	if err != nil {
		return snapshots.Info{}, fmt.Errorf("stat snapshot %q: %w", key, err)
	}
	return info, nil
}

// Update changes a snapshot's labels.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (_ snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		info, err = storage.UpdateInfo(ctx, info, fieldpaths...)
		return err
	})
	if err != nil {
		return snapshots.Info{}, fmt.Errorf("update snapshot %q: %w", info.Name, err)
	}
	return info, nil
}

// Usage is the disk usage of a snapshot's own directory (measured now for an active one, at
// its commit for a committed one; a remote snapshot uses nothing on the host).
func (s *Snapshotter) Usage(ctx context.Context, key string) (usage snapshots.Usage, err error) {
	var (
		id   string
		info snapshots.Info
	)
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		id, info, usage, err = storage.GetInfo(ctx, key)
		return err
	})
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("usage of snapshot %q: %w", key, err)
	}
	if info.Kind == snapshots.KindActive {
		du, err := fs.DiskUsage(ctx, s.dir(id))
		if err != nil {
			return snapshots.Usage{}, fmt.Errorf("usage of snapshot %q: %w", key, err)
		}
		usage = snapshots.Usage(du)
	}
	return usage, nil
}

// Prepare makes an active snapshot, or, for the unpacker's extraction snapshot of a layer
// (target label set), a remote committed one and ErrAlreadyExists (remote.go).
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return nil, err
		}
	}
	if target := base.Labels[snapshots.LabelSnapshotRef]; target != "" {
		return nil, s.remote(ctx, key, parent, target, base.Labels)
	}
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View makes a read-only view of parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

// Mounts returns the mounts of an active snapshot or view.
func (s *Snapshotter) Mounts(ctx context.Context, key string) (_ []mount.Mount, err error) {
	var sn storage.Snapshot
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		sn, err = storage.GetSnapshot(ctx, key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mounts of snapshot %q: %w", key, err)
	}
	return s.mounts(sn), nil
}

// Commit turns the active snapshot key into the committed snapshot name.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		id, _, _, err := storage.GetInfo(ctx, key)
		if err != nil {
			return fmt.Errorf("commit %q as %q: %w", key, name, err)
		}
		usage, err := fs.DiskUsage(ctx, s.dir(id))
		if err != nil {
			return fmt.Errorf("commit %q as %q: %w", key, name, err)
		}
		if _, err = storage.CommitActive(ctx, key, name, snapshots.Usage(usage), opts...); err != nil {
			return fmt.Errorf("commit %q as %q: %w", key, name, err)
		}
		return nil
	})
}

// Remove removes a snapshot and its directory. A committed snapshot with children is refused
// (storage.Remove: FailedPrecondition).
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	var renamed, path string
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		id, _, err := storage.Remove(ctx, key)
		if err != nil {
			return err
		}
		path = s.dir(id)
		renamed = filepath.Join(s.root, "snapshots", "rm-"+id)
		if err := os.Rename(path, renamed); err != nil {
			if !os.IsNotExist(err) {
				return err
			}
			renamed = ""
		}
		return nil
	})
	if err != nil {
		if renamed != "" {
			if err1 := os.Rename(renamed, path); err1 != nil {
				log.G(ctx).WithError(err1).WithField("path", renamed).Error("restore the directory of a snapshot not removed")
			}
		}
		return fmt.Errorf("remove snapshot %q: %w", key, err)
	}
	if renamed != "" {
		if err := os.RemoveAll(renamed); err != nil {
			// Cleanup removes it later.
			log.G(ctx).WithError(err).WithField("path", renamed).Warn("remove the directory of a removed snapshot")
		}
	}
	return nil
}

// Walk calls fn for every snapshot that matches the filters.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, fn, filters...)
	})
}

// Cleanup removes every directory under <root>/snapshots that no snapshot owns: the
// "new-*" and "rm-*" directories of interrupted operations. containerd calls it after its
// garbage collection.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	var ids map[string]string
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) (err error) {
		ids, err = storage.IDMap(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	dir := filepath.Join(s.root, "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if _, ok := ids[e.Name()]; ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		log.G(ctx).WithField("path", p).Info("cleanup: removing a directory no snapshot owns")
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}

// Close closes the metadata store.
func (s *Snapshotter) Close() error { return s.ms.Close() }

// create makes an active snapshot or a view: a new directory holding a copy of the parent's
// (native's layout: a remote parent's directory is empty).
func (s *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) (_ []mount.Mount, err error) {
	var td, path string
	if kind == snapshots.KindActive || parent == "" {
		if td, err = s.tempDir(); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				_ = os.RemoveAll(td)
				if path != "" {
					_ = os.RemoveAll(path)
				}
			}
		}()
	}
	var sn storage.Snapshot
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		sn, err = storage.CreateSnapshot(ctx, kind, key, parent, opts...)
		if err != nil {
			return err
		}
		if td == "" {
			return nil
		}
		if len(sn.ParentIDs) > 0 {
			onXattr := func(dst, src, xattrKey string, copyErr error) error {
				// security.* xattrs cannot be copied in most cases (moby/buildkit#1189)
				log.G(ctx).WithError(copyErr).Debugf("copy xattr %q", xattrKey)
				return nil
			}
			if err := fs.CopyDir(td, s.dir(sn.ParentIDs[0]), fs.WithXAttrErrorHandler(onXattr)); err != nil {
				return fmt.Errorf("copy the parent %q: %w", parent, err)
			}
		}
		path = s.dir(sn.ID)
		if err := os.Rename(td, path); err != nil {
			return err
		}
		td = ""
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s snapshot %q (parent %q): %w", strings.ToLower(kind.String()), key, parent, err)
	}
	return s.mounts(sn), nil
}

// tempDir makes a "new-*" directory (mode 0755, a root's) under <root>/snapshots.
func (s *Snapshotter) tempDir() (string, error) {
	td, err := os.MkdirTemp(filepath.Join(s.root, "snapshots"), "new-")
	if err != nil {
		return "", fmt.Errorf("snapshot directory: %w", err)
	}
	if err := os.Chmod(td, 0o755); err != nil {
		_ = os.RemoveAll(td)
		return "", fmt.Errorf("snapshot directory: %w", err)
	}
	return td, nil
}

func (s *Snapshotter) dir(id string) string { return filepath.Join(s.root, "snapshots", id) }

// mounts is a bind mount of the snapshot's directory (an active snapshot's own, a view's
// parent's), read-only for a view.
func (s *Snapshotter) mounts(sn storage.Snapshot) []mount.Mount {
	mode, source := "rw", s.dir(sn.ID)
	if sn.Kind == snapshots.KindView {
		mode = "ro"
		if len(sn.ParentIDs) > 0 {
			source = s.dir(sn.ParentIDs[0])
		}
	}
	return []mount.Mount{{Type: "bind", Source: source, Options: []string{"rbind", mode}}}
}
