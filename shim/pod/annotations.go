package pod

// Annotations that group containers into one pod (one VM, one shim). containerd's CRI (1.x and
// 2.x) sets the first two; CRI-O the next two; GroupAnnotation lets `ctr run --annotation`
// users group plain containers, as io.containerd.runc.v2.group does for runc.
const (
	CRIContainerType  = "io.kubernetes.cri.container-type"
	CRISandboxID      = "io.kubernetes.cri.sandbox-id"
	CRIOContainerType = "io.kubernetes.cri-o.ContainerType"
	CRIOSandboxID     = "io.kubernetes.cri-o.SandboxID"
	GroupAnnotation   = "io.containerd.veil.v2.group"

	containerTypeSandbox = "sandbox"
)

// SandboxOf returns the id of the pod that container id belongs to, given its OCI spec's
// annotations: the CRI sandbox id, the group annotation, or id itself (a VM of its own).
func SandboxOf(id string, annotations map[string]string) string {
	for _, k := range []string{CRISandboxID, CRIOSandboxID, GroupAnnotation} {
		if v := annotations[k]; v != "" {
			return v
		}
	}
	return id
}

// IsSandboxContainer reports whether the container is the one that creates its pod (CRI's
// pause container, or a container without grouping annotations).
func IsSandboxContainer(id string, annotations map[string]string) bool {
	for _, k := range []string{CRIContainerType, CRIOContainerType} {
		if v, ok := annotations[k]; ok {
			return v == containerTypeSandbox
		}
	}
	return SandboxOf(id, annotations) == id || annotations[GroupAnnotation] != ""
}
