package container

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/opencontainers/runc/libcontainer/configs"
)

// checkExecutable returns an InvalidArgument error naming arg0 when the program of a process
// certainly does not exist in the container's root file system, so that the caller gets a
// clear error before anything starts. When the program could lie on one of the container's
// mounts (which exist only once the container is set up) or PATH holds relative entries, it
// does not decide: libcontainer's own lookup at start reports those cases.
func checkExecutable(cfg *configs.Config, arg0, cwd string, env []string) error {
	var candidates []string
	searchPath := envValue(env, "PATH")
	if strings.Contains(arg0, "/") {
		candidates = []string{path.Join(cwdOrRoot(cwd), arg0)}
		if path.IsAbs(arg0) {
			candidates[0] = path.Clean(arg0)
		}
	} else {
		for _, dir := range filepath.SplitList(searchPath) {
			if !path.IsAbs(dir) {
				return nil
			}
			candidates = append(candidates, path.Join(dir, arg0))
		}
	}
	for _, cand := range candidates {
		full, err := securejoin.SecureJoin(cfg.Rootfs, cand)
		if err != nil {
			return nil
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(full, cfg.Rootfs), "/")
		if onMount(cfg, cand) || onMount(cfg, rel) {
			return nil
		}
		if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return nil
		}
	}
	return fmt.Errorf("process.args[0] %q: no such executable in the container (PATH=%q): %w",
		arg0, searchPath, errdefs.ErrInvalidArgument)
}

// onMount reports whether p lies at or below the destination of one of cfg's mounts.
func onMount(cfg *configs.Config, p string) bool {
	for _, m := range cfg.Mounts {
		dest := path.Clean("/" + m.Destination)
		if dest == "/" || p == dest || strings.HasPrefix(p, dest+"/") {
			return true
		}
	}
	return false
}

// envValue returns the value of the last key=value entry of env for key.
func envValue(env []string, key string) string {
	var v string
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}
