package containerdcfg

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/veil-runtime/veil/deploy/installer/host"
	"github.com/veil-runtime/veil/deploy/installer/internal/atomicfile"
)

// State records what Apply changed, for Revert (host paths; digests are hex SHA-256).
type State struct {
	Config string `json:"config"`
	// Created: the main file did not exist and Apply created it.
	Created bool `json:"created,omitempty"`
	// Backup holds the main file as it was before Apply added the import (Edited).
	Backup string `json:"backup,omitempty"`
	// Written is the main file's digest as Apply left it.
	Written string `json:"written,omitempty"`
	DropIn  string `json:"dropIn"`
	// DropInDirCreated: Apply made the drop-in's directory.
	DropInDirCreated bool `json:"dropInDirCreated,omitempty"`
}

// Apply writes the drop-in for spec and makes the main file import it. prev is the state of
// an earlier Apply (nil: none): an import veil-deploy added before is not added twice and the
// original's backup is kept. It reports whether containerd must be restarted.
func (c *Config) Apply(spec Spec, prev *State) (State, bool, error) {
	st := State{Config: c.Path, DropIn: c.DropIn}
	if prev != nil && prev.Config == c.Path {
		st.Created, st.Backup, st.Written, st.DropInDirCreated = prev.Created, prev.Backup, prev.Written, prev.DropInDirCreated
	}
	data, err := c.Render(spec)
	if err != nil {
		return st, false, err
	}
	changed := false
	local := c.Host.Path(c.DropIn)
	if old, err := os.ReadFile(local); err != nil || !bytes.Equal(old, data) {
		if _, err := os.Stat(filepath.Dir(local)); errors.Is(err, os.ErrNotExist) {
			st.DropInDirCreated = true
		}
		if err := atomicfile.WriteFile(local, data, 0o644); err != nil {
			return st, false, fmt.Errorf("containerd drop-in: %w", err)
		}
		changed = true
	}
	if c.Covered {
		return st, changed, nil
	}
	main := c.Host.Path(c.Path)
	if !c.Exists {
		content := fmt.Sprintf("# Written by veil-deploy: containerd's defaults plus Veil's drop-in. veil-deploy uninstall removes it.\n"+
			"version = %d\nimports = %s\n", c.Version, formatArray([]string{c.DropIn}))
		if err := atomicfile.WriteFile(main, []byte(content), 0o644); err != nil {
			return st, changed, fmt.Errorf("create containerd config: %w", err)
		}
		st.Created, st.Backup, st.Written = true, "", atomicfile.Sum([]byte(content))
		return st, true, nil
	}
	edited, err := setImports(c.Raw, append(append([]string(nil), c.Imports...), c.DropIn), c.Version)
	if err != nil {
		return st, changed, fmt.Errorf("containerd config %s: cannot add %s to its imports safely (%w): add it by hand", c.Path, c.DropIn, err)
	}
	fi, err := os.Stat(main)
	if err != nil {
		return st, changed, fmt.Errorf("containerd config: %w", err)
	}
	backup := c.Path + BackupSuffix
	if err := writeLike(c.Host.Path(backup), c.Raw, fi); err != nil {
		return st, changed, fmt.Errorf("containerd config backup: %w", err)
	}
	if err := writeLike(main, edited, fi); err != nil {
		return st, changed, fmt.Errorf("containerd config: %w", err)
	}
	st.Created, st.Backup, st.Written = false, backup, atomicfile.Sum(edited)
	return st, true, nil
}

// writeLike replaces path with data, with the mode and owner of fi.
func writeLike(path string, data []byte, fi os.FileInfo) error {
	f, err := atomicfile.Temp(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		atomicfile.Abort(f)
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := f.Chown(int(sys.Uid), int(sys.Gid)); err != nil {
			atomicfile.Abort(f)
			return fmt.Errorf("chown %s: %w", f.Name(), err)
		}
	}
	return atomicfile.Commit(f, path, fi.Mode().Perm())
}

// Revert undoes Apply: the drop-in goes; a main file Apply created is removed and one it
// edited is restored from the backup, byte for byte, when nobody changed it since. A main
// file changed since (or with no state) keeps its content, minus the import of the drop-in,
// so that containerd does not fail on a missing file. st may be nil (the state was lost):
// then the default drop-in and its import are removed from the default config. notes says what was not restored.
func Revert(h host.Host, st *State) (changed bool, notes []string, err error) {
	if st == nil {
		st = &State{Config: DefaultConfig, DropIn: DropInFor(DefaultConfig)}
	}
	removed, err := atomicfile.Remove(h.Path(st.DropIn))
	if err != nil {
		return false, nil, fmt.Errorf("containerd drop-in: %w", err)
	}
	changed = removed
	if st.DropInDirCreated {
		os.Remove(filepath.Dir(h.Path(st.DropIn))) // only when empty
	}
	main := h.Path(st.Config)
	cur, err := os.ReadFile(main)
	if errors.Is(err, os.ErrNotExist) {
		return changed, notes, nil
	}
	if err != nil {
		return changed, notes, fmt.Errorf("read containerd config: %w", err)
	}
	unchanged := st.Written != "" && atomicfile.Sum(cur) == st.Written
	switch {
	case st.Created && unchanged:
		if _, err := atomicfile.Remove(main); err != nil {
			return changed, notes, fmt.Errorf("containerd config: %w", err)
		}
		return true, notes, nil
	case st.Backup != "" && unchanged:
		orig, err := os.ReadFile(h.Path(st.Backup))
		if err != nil {
			return changed, notes, fmt.Errorf("containerd config backup (the original of %s): %w", st.Config, err)
		}
		fi, err := os.Stat(h.Path(st.Backup))
		if err != nil {
			return changed, notes, fmt.Errorf("containerd config backup: %w", err)
		}
		if err := writeLike(main, orig, fi); err != nil {
			return changed, notes, fmt.Errorf("restore containerd config: %w", err)
		}
		if _, err := atomicfile.Remove(h.Path(st.Backup)); err != nil {
			return true, notes, fmt.Errorf("containerd config backup: %w", err)
		}
		return true, notes, nil
	}
	// Changed since, or unknown: take out only the exact import of the drop-in.
	c, err := Read(h, st.Config, 2)
	if err != nil {
		return changed, notes, err
	}
	var keep []string
	for _, e := range c.Imports {
		if c.resolve(e) != st.DropIn {
			keep = append(keep, e)
		}
	}
	if st.Created || st.Backup != "" {
		notes = append(notes, fmt.Sprintf("%s changed since the install: kept, with only the import of %s taken out", st.Config, st.DropIn))
		if st.Backup != "" {
			notes = append(notes, fmt.Sprintf("the original from before the install stays at %s", st.Backup))
		}
	}
	if len(keep) == len(c.Imports) {
		return changed, notes, nil
	}
	edited, err := setImports(c.Raw, keep, 0)
	if err != nil {
		return changed, notes, fmt.Errorf("containerd config %s: cannot remove %s from its imports safely (%w): remove it by hand", st.Config, st.DropIn, err)
	}
	fi, err := os.Stat(main)
	if err != nil {
		return changed, notes, fmt.Errorf("containerd config: %w", err)
	}
	if err := writeLike(main, edited, fi); err != nil {
		return changed, notes, fmt.Errorf("containerd config: %w", err)
	}
	return true, notes, nil
}
