package config

import (
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"
)

// containerd's CRI sets these on the sandbox container's spec from the kubelet's
// PodSandboxConfig.Linux.Resources (Kubernetes ≥ 1.23): the sum of the pod's containers'
// CPU and memory limits.
const (
	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// maxVCPUs is the most vCPUs Validate accepts.
const maxVCPUs = 255

// WithPodSize returns a copy of c whose VM grows by the pod's containers' limits, when
// hypervisor.size_from_pod is on: memory_mib plus the pod's memory limit (rounded up to
// MiB), vcpus plus the pod's CPU limit (quota/period, rounded up; at most 255 in all), as
// Kata's static_sandbox_resource_mgmt does. The configured size (and a pod's
// io.veil.config.* annotations) is the base: the guest's own share, which the RuntimeClass
// overhead pays for. No limit (annotation absent, 0, or a quota ≤ 0) adds nothing. A value
// that is not a number is an InvalidArgument error naming the annotation.
func (c *Config) WithPodSize(annotations map[string]string) (*Config, error) {
	out := *c
	if !c.Hypervisor.SizeFromPod {
		return &out, nil
	}
	num := func(key string) (int64, error) {
		v, ok := annotations[key]
		if !ok || v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("annotation %s=%q: not an integer: %w", key, v, errdefs.ErrInvalidArgument)
		}
		return n, nil
	}
	mem, err := num(AnnotationSandboxMemory)
	if err != nil {
		return nil, err
	}
	quota, err := num(AnnotationSandboxCPUQuota)
	if err != nil {
		return nil, err
	}
	period, err := num(AnnotationSandboxCPUPeriod)
	if err != nil {
		return nil, err
	}
	h := &out.Hypervisor
	if mem > 0 {
		mib := (uint64(mem) + 1<<20 - 1) >> 20
		if uint64(h.MemoryMiB)+mib > 1<<32-1 {
			return nil, fmt.Errorf("annotation %s=%d: %d MiB of VM memory is too much: %w",
				AnnotationSandboxMemory, mem, uint64(h.MemoryMiB)+mib, errdefs.ErrInvalidArgument)
		}
		h.MemoryMiB += uint32(mib)
	}
	if quota > 0 && period > 0 {
		extra := uint64((quota + period - 1) / period)
		h.VCPUs = uint32(min(uint64(h.VCPUs)+extra, maxVCPUs))
	}
	return &out, nil
}
