package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// AnnotationPrefix starts every annotation that overrides this configuration.
const AnnotationPrefix = "io.veil.config."

// The annotations a pod may set, when runtime.allowed_annotations lets it.
const (
	AnnotationMemory       = AnnotationPrefix + "hypervisor.memory_mib"
	AnnotationVCPUs        = AnnotationPrefix + "hypervisor.vcpus"
	AnnotationKernelParams = AnnotationPrefix + "hypervisor.kernel_params" // space-separated, appended
	AnnotationDebugConsole = AnnotationPrefix + "hypervisor.debug_console"
	AnnotationBootTimeout  = AnnotationPrefix + "hypervisor.boot_timeout"
)

// allowed reports whether the configuration lets pods set annotation key.
func (c *Config) allowed(key string) bool {
	for _, p := range c.Runtime.AllowedAnnotations {
		if ok, _ := filepath.Match(p, key); ok {
			return true
		}
	}
	return false
}

// WithAnnotations returns a copy of c with the pod's io.veil.config.* annotations applied.
// An annotation the configuration does not allow, an unknown one, or a bad value is an
// error (PermissionDenied or InvalidArgument): a pod never silently gets a VM other than the
// one it asked for. Other annotations are ignored.
func (c *Config) WithAnnotations(annotations map[string]string) (*Config, error) {
	out := *c
	out.Hypervisor.KernelParams = append([]string(nil), c.Hypervisor.KernelParams...)
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !c.allowed(k) {
			return nil, fmt.Errorf("annotation %s is not in runtime.allowed_annotations of %s: %w",
				k, c.describe(), errdefs.ErrPermissionDenied)
		}
		if err := out.apply(k, annotations[k]); err != nil {
			return nil, fmt.Errorf("annotation %s=%q: %w: %w", k, annotations[k], err, errdefs.ErrInvalidArgument)
		}
	}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("after annotations: %w", err)
	}
	return &out, nil
}

func (c *Config) apply(key, v string) error {
	h := &c.Hypervisor
	switch key {
	case AnnotationMemory, AnnotationVCPUs:
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return err
		}
		if key == AnnotationMemory {
			h.MemoryMiB = uint32(n)
		} else {
			h.VCPUs = uint32(n)
		}
	case AnnotationKernelParams:
		h.KernelParams = append(h.KernelParams, strings.Fields(v)...)
	case AnnotationDebugConsole:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		h.DebugConsole = b
	case AnnotationBootTimeout:
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		h.BootTimeout = Duration{d}
	default:
		return fmt.Errorf("unknown annotation")
	}
	return nil
}

func (c *Config) describe() string {
	if c.Path == "" {
		return "the built-in configuration"
	}
	return c.Path
}
