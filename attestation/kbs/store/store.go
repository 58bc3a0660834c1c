// Package store keeps the KBS's resources. Store is the small interface the server needs; Dir
// is the default implementation, one file per resource under a directory
// (DIR/repository/type/tag), opened through an os.Root so that no path can leave it.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sync"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// ErrNotFound is wrapped when a resource does not exist.
var ErrNotFound = errors.New("resource not found")

// ErrExists is wrapped when Create finds the resource already there.
var ErrExists = errors.New("resource already exists")

// Store reads and writes resources by path. Implementations must be safe for concurrent use.
type Store interface {
	// Get returns the resource's bytes, or an error wrapping ErrNotFound.
	Get(ctx context.Context, p protocol.ResourcePath) ([]byte, error)
	// Put creates or replaces the resource.
	Put(ctx context.Context, p protocol.ResourcePath, data []byte) error
	// Create creates the resource, or returns an error wrapping ErrExists and leaves it as it
	// was (a key generated on demand never replaces one that images already depend on).
	Create(ctx context.Context, p protocol.ResourcePath, data []byte) error
}

// Dir is a Store of files under one directory. Files are written 0600 and replaced atomically.
type Dir struct {
	root *os.Root
	mu   sync.Mutex // serialises writers
}

var _ Store = (*Dir)(nil)

// OpenDir opens (and creates, 0700, if missing) a directory store.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("resource store %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("resource store %s: %w", dir, err)
	}
	return &Dir{root: root}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// Get implements Store.
func (d *Dir) Get(_ context.Context, p protocol.ResourcePath) ([]byte, error) {
	if _, err := protocol.ParseResourcePath(p.String()); err != nil {
		return nil, err
	}
	data, err := d.root.ReadFile(path.Join(p.Repository, p.Type, p.Tag))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, p)
	}
	if err != nil {
		return nil, fmt.Errorf("read resource %s: %w", p, err)
	}
	return data, nil
}

// Put implements Store.
func (d *Dir) Put(_ context.Context, p protocol.ResourcePath, data []byte) error {
	return d.write(p, data, false)
}

// Create implements Store.
func (d *Dir) Create(_ context.Context, p protocol.ResourcePath, data []byte) error {
	return d.write(p, data, true)
}

// write stores the resource atomically; with exclusive, only if it does not exist yet (the
// mutex makes the check and the rename one step for every writer of the directory).
func (d *Dir) write(p protocol.ResourcePath, data []byte, exclusive bool) error {
	if _, err := protocol.ParseResourcePath(p.String()); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dir := path.Join(p.Repository, p.Type)
	if exclusive {
		_, err := d.root.Lstat(path.Join(dir, p.Tag))
		if err == nil {
			return fmt.Errorf("%w: %s", ErrExists, p)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("write resource %s: %w", p, err)
		}
	}
	if err := d.root.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write resource %s: %w", p, err)
	}
	// The tag cannot start with '.', so the temporary name cannot clash with a resource.
	tmp := path.Join(dir, ".tmp-"+p.Tag)
	if err := d.root.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write resource %s: %w", p, err)
	}
	if err := d.root.Rename(tmp, path.Join(dir, p.Tag)); err != nil {
		_ = d.root.Remove(tmp)
		return fmt.Errorf("write resource %s: %w", p, err)
	}
	return nil
}
