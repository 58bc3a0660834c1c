package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CreateScratchDisk makes path a sparse file of mib MiB, readable by its owner only, for
// Options.ScratchDisk: it takes no host disk until the guest writes, and then only what the
// guest wrote (as ciphertext). A file already at path is replaced: its old ciphertext is
// unreadable to a new boot anyway, and a new file holds none of it.
func CreateScratchDisk(path string, mib uint64) error {
	if mib == 0 {
		return errors.New("scratch disk: size 0")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("scratch disk: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("scratch disk: replace %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("scratch disk: %w", err)
	}
	if err := f.Truncate(int64(mib) << 20); err != nil {
		f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("scratch disk: size %s to %d MiB: %w", path, mib, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("scratch disk: %w", err)
	}
	return nil
}

// RemoveScratchDisk removes the file at path, if any.
func RemoveScratchDisk(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("scratch disk: %w", err)
	}
	return nil
}
