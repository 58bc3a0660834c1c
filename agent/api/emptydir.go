package api

import (
	"fmt"
	"regexp"
	"strings"
)

// A pod's emptyDir volumes, when the guest keeps them (docs/scratch.md): the host does not
// share a directory of its own, it sends a DriverEmptyDir storage that names the volume, and
// the agent makes the volume's directory at EmptyDirPath(name), below EmptyDirDir, on the
// encrypted scratch disk (ScratchEmptyDirs) or, for the memory medium, as a tmpfs. Every
// container of the pod that names the volume gets the same directory; it lasts as long as the
// VM.
const (
	// DriverEmptyDir is a pod's emptyDir volume kept in the guest: Storage.source is the
	// volume's name (CheckEmptyDirName), Storage.fstype is EmptyDirMemory for the memory
	// medium or "" for the guest's disk, and Storage.mount_point must be EmptyDirPath(source).
	DriverEmptyDir = "emptydir"
	// EmptyDirMemory is the Storage.fstype of a memory-medium emptyDir: a tmpfs in the guest.
	EmptyDirMemory = "tmpfs"
	// EmptyDirDir holds the volumes' directories. Guest-private: the host names only the
	// exact directory of a volume that a storage made.
	EmptyDirDir = GuestRoot + "/emptydir"
	// ScratchEmptyDirs is the directory of ScratchDir that becomes EmptyDirDir when the guest
	// has a scratch disk. Without one, EmptyDirDir is in guest RAM.
	ScratchEmptyDirs = ScratchDir + "/emptydir"
	// MaxEmptyDirName is the longest volume name (Kubernetes' volume names are DNS labels).
	MaxEmptyDirName = 63
	// KubeletEmptyDir is the host path element of kubelet's emptyDir volumes: kubelet makes
	// volume <name> of pod <uid> at /var/lib/kubelet/pods/<uid>/volumes/KubeletEmptyDir/<name>
	// (a directory, or a tmpfs it mounts there for medium: Memory), and containerd's CRI
	// passes that directory as the source of the container's bind mount. The shim recognises
	// the volumes by it.
	KubeletEmptyDir = "kubernetes.io~empty-dir"
)

// EmptyDirPath is the guest directory of the emptyDir volume name.
func EmptyDirPath(name string) string { return EmptyDirDir + "/" + name }

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// CheckEmptyDirName refuses a volume name that is not a Kubernetes volume name (a DNS label:
// lower-case letters, digits and '-', at most MaxEmptyDirName bytes), so that
// EmptyDirPath(name) is always one directory of EmptyDirDir. The error says what is wrong.
func CheckEmptyDirName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("emptyDir volume name is empty")
	case strings.Contains(name, "/"):
		return fmt.Errorf("emptyDir volume name %q contains '/'", name)
	case name == "." || name == ".." || strings.Contains(name, ".."):
		return fmt.Errorf("emptyDir volume name %q contains \"..\" or is \".\"", name)
	case len(name) > MaxEmptyDirName:
		return fmt.Errorf("emptyDir volume name %.20q... is %d bytes long (at most %d)", name, len(name), MaxEmptyDirName)
	case !dnsLabel.MatchString(name):
		return fmt.Errorf("emptyDir volume name %q is not a DNS label (a-z, 0-9 and '-', starting and ending with a letter or digit)", name)
	}
	return nil
}
