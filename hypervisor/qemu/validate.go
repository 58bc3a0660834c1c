package qemu

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/veil-runtime/veil/hypervisor"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path less its NUL).
const maxSocketPath = 107

// Validate checks cfg for this driver: the rules every driver shares (Config.Validate) and
// QEMU's own. It returns all failures together.
func Validate(cfg hypervisor.Config) error {
	errs := []error{cfg.Validate()}
	cfg = cfg.WithDefaults()
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch cfg.Machine {
	case "q35", "microvm":
	default:
		add("machine %q: want q35 or microvm", cfg.Machine)
	}
	if cfg.Transport == hypervisor.TransportHybridVsock {
		add("transport hybrid-vsock is Cloud Hypervisor's: want virtio-serial or vsock")
	}
	confidential := cfg.TEE.Kind == hypervisor.TEESNP || cfg.TEE.Kind == hypervisor.TEETDX
	if confidential && cfg.Machine == "microvm" {
		add("tee %s needs machine q35, not microvm", cfg.TEE.Kind)
	}
	longest := filepath.Join(cfg.StateDir, fsSocket(max(len(cfg.SharedDirs)-1, 0)))
	if len(longest) > maxSocketPath || len(filepath.Join(cfg.StateDir, agentSocket)) > maxSocketPath {
		add("state dir %q is too long for the unix sockets inside it (at most %d bytes in all)", cfg.StateDir, maxSocketPath)
	}
	for _, s := range cfg.SharedDirs {
		if strings.ContainsAny(s.HostPath, ",\n") {
			add("shared dir %q: host path %q: commas and newlines are not supported by virtiofsd's options", s.Tag, s.HostPath)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("qemu: invalid config: %w", err)
	}
	return nil
}

// normalize validates cfg and fills in defaults. An empty Transport means virtio-serial here:
// New has already replaced it by the host's choice.
func normalize(cfg hypervisor.Config) (hypervisor.Config, error) {
	if err := Validate(cfg); err != nil {
		return cfg, err
	}
	cfg = cfg.WithDefaults()
	if cfg.Transport == "" {
		cfg.Transport = hypervisor.TransportVirtioSerial
	}
	return cfg, nil
}
