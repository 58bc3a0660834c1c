package initsys

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// ParseModuleList reads a modules list: one absolute path a line; blank lines and lines
// starting with '#' are skipped. A relative path is an error that names its line.
func ParseModuleList(r io.Reader) ([]string, error) {
	var paths []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !filepath.IsAbs(line) {
			return nil, fmt.Errorf("modules list line %d: %q is not an absolute path", n, line)
		}
		paths = append(paths, filepath.Clean(line))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules list: %w", err)
	}
	return paths, nil
}

// LoadModules loads the modules that the list file names, in its order. A missing list means
// there is nothing to load. A module that is already loaded (EEXIST) counts as loaded; any
// other failure is logged as a warning and loading goes on. It returns how many modules
// are loaded and the failures.
func LoadModules(ctx context.Context, list string) (int, error) {
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		log.G(ctx).Debugf("no modules list at %s: no modules to load", list)
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("open modules list: %w", err)
	}
	defer f.Close()
	paths, err := ParseModuleList(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", list, err)
	}
	var (
		loaded int
		errs   []error
	)
	for _, p := range paths {
		if err := loadModule(p); err != nil {
			log.G(ctx).WithError(err).Warn("module not loaded")
			errs = append(errs, err)
			continue
		}
		log.G(ctx).Debugf("loaded module %s", p)
		loaded++
	}
	return loaded, errors.Join(errs...)
}

// loadModule loads one decompressed module with finit_module(2).
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}
