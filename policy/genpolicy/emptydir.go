package genpolicy

import (
	"fmt"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/policy/policies"
)

// podVolume is an entry of spec.volumes; only emptyDir matters here (the others are shared from
// the host as volumes).
type podVolume struct {
	Name     string          `json:"name"`
	EmptyDir *emptyDirSource `json:"emptyDir"`
}

// emptyDirSource is a volume's emptyDir: medium "Memory" is a tmpfs, "" the node's disk.
// sizeLimit is not read: kubelet enforces it by eviction, which cannot see into the guest.
type emptyDirSource struct {
	Medium string `json:"medium"`
}

// emptyDir returns the emptyDir of the pod's volume name, or nil when it is not one.
func (ps *podSpec) emptyDir(name string) *emptyDirSource {
	for _, v := range ps.Volumes {
		if v.Name == name {
			return v.EmptyDir
		}
	}
	return nil
}

// emptyDirMount is the entry of a mount of an emptyDir volume: the guest's volume of that
// name (policies.Mount.EmptyDir), a tmpfs for medium Memory, never a directory the host
// shares. The shim and agent keep it in the guest (docs/scratch.md), on the encrypted
// scratch disk for the disk medium.
func emptyDirMount(vm volumeMount, ed *emptyDirSource) policies.Mount {
	m := policies.Mount{Type: "bind", EmptyDir: vm.Name, EmptyDirMemory: ed.Medium == "Memory"}
	if vm.ReadOnly {
		m.Options = []string{"ro"}
	}
	return m
}

// checkEmptyDirs refuses what the guest's emptyDir volumes cannot be: a name the agent
// refuses, a medium other than "" and Memory (HugePages), and a subPath (kubelet binds those
// from elsewhere on the host, so the shim would share them, and the policy would refuse them).
func checkEmptyDirs(ps *podSpec, all []container) error {
	for _, v := range ps.Volumes {
		if v.EmptyDir == nil {
			continue
		}
		if err := api.CheckEmptyDirName(v.Name); err != nil {
			return fmt.Errorf("spec.volumes: %w", err)
		}
		if m := v.EmptyDir.Medium; m != "" && m != "Memory" {
			return fmt.Errorf("spec.volumes: emptyDir volume %s: medium %q is not supported in a confidential pod (\"\" or Memory)", v.Name, m)
		}
	}
	for _, c := range all {
		for _, vm := range c.VolumeMounts {
			if ps.emptyDir(vm.Name) != nil && (vm.SubPath != "" || vm.SubPathExpr != "") {
				return fmt.Errorf("container %s: volumeMount %s of emptyDir volume %s: subPath is not supported in a "+
					"confidential pod (the guest keeps the volume; mount the whole volume)", c.Name, vm.MountPath, vm.Name)
			}
		}
	}
	return nil
}
