package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/hypervisor"
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
	// A TEE's vCPU count is part of its launch measurement (SNP measures a VMSA per vCPU), which
	// the KBS's reference values pin: a TEE pod keeps the configured vcpus, and its CPU limit
	// is enforced on the host, in the pod's cgroup.
	if quota > 0 && period > 0 && (h.TEE == "" || h.TEE == string(hypervisor.TEENone)) {
		extra := uint64((quota + period - 1) / period)
		h.VCPUs = uint32(min(uint64(h.VCPUs)+extra, maxVCPUs))
	}
	return &out, nil
}

// FitHost checks c's VM against the host: more memory than the host has (hostMemMiB, its
// MemTotal) is refused with both figures, a FailedPrecondition error; more vCPUs than the host
// has CPUs (hostCPUs) are cut to hostCPUs, since more would only time-slice the same CPUs.
func (c *Config) FitHost(hostMemMiB uint64, hostCPUs int) (*Config, error) {
	out := *c
	h := &out.Hypervisor
	if hostMemMiB > 0 && uint64(h.MemoryMiB) > hostMemMiB {
		return nil, fmt.Errorf("the pod's VM needs %d MiB of memory (memory_mib plus the pod's memory limits) and this host has %d MiB: %w",
			h.MemoryMiB, hostMemMiB, errdefs.ErrFailedPrecondition)
	}
	if hostCPUs > 0 && int(h.VCPUs) > hostCPUs {
		h.VCPUs = uint32(hostCPUs)
	}
	return &out, nil
}

// HostMemMiB is the host's MemTotal in MiB, from meminfo (/proc/meminfo's format); 0 when it
// cannot be read, which FitHost takes as unknown.
func HostMemMiB(meminfo string) uint64 {
	data, err := os.ReadFile(meminfo)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb >> 10
		}
	}
	return 0
}
