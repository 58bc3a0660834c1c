package api

import "strconv"

// The guest's directories that the host and the guest both name. The host may name paths
// below SharedDir and StorageDir, and the emptyDir volumes an api.DriverEmptyDir storage made
// (EmptyDirPath), only; the agent resolves every such path beneath the mount
// it lies on, without following a symbolic link, a /proc magic link or a mount boundary, so
// that nothing the host placed on its side of a share leads anywhere else in the guest.
// ContainersDir, ImagesDir and SandboxDir are the agent's own: no host-named path reaches them.
const (
	// GuestRoot is the directory of everything Veil places in the guest for the host's
	// requests.
	GuestRoot = "/run/veil"
	// SharedDir is where CreateSandbox mounts the pod's virtio-fs share (ShareTag): the host's
	// files, that is the root file systems it shares, the sources of volume mounts and
	// CopyFile's targets.
	SharedDir = GuestRoot + "/shared"
	// StorageDir is where the host may mount storages of its own (virtiofs, tmpfs, bind) for
	// a container, for tools such as veil-ctl; the containerd shim uses SharedDir only.
	StorageDir = GuestRoot + "/storage"
	// ContainersDir holds what the agent mounts for each container: ContainerRootfs(id), the
	// container's root file system, and its volumes' sources. Guest-private.
	ContainersDir = GuestRoot + "/containers"
	// ImagesDir holds the images the agent pulls (the image cache) and the overlays' upper
	// and work directories. Guest-private.
	ImagesDir = GuestRoot + "/images"
	// SandboxDir holds the files the agent writes for the sandbox (ResolvConf). Guest-private.
	SandboxDir = GuestRoot + "/sandbox"
	// ResolvConf is where CreateSandbox writes the pod's DNS lines; a container may bind-mount
	// it.
	ResolvConf = SandboxDir + "/resolv.conf"
)

// SandboxNamespaceDir is where a container's spec names the namespaces of the pod's sandbox
// container: a namespace with path SandboxNamespaceDir + "/" + type ("ipc", "uts", "pid")
// joins the sandbox container's. containerd's CRI writes the host's view of these paths
// (/proc/<sandbox pid>/ns/ipc); the shim rewrites them to this form, the agent resolves them
// to its own sandbox container's, and a policy can allow exactly these paths without knowing
// any pid. Nothing exists at these paths: they are names.
const SandboxNamespaceDir = SandboxDir + "/ns"

// ShareTag is the virtio-fs tag of the pod's share, mounted at SharedDir.
const ShareTag = "veil-shared"

// ContainerRootfs is the guest path of container id's root file system: the agent mounts it
// there, whatever the root is (a pulled image, the pause bundle, or a directory the host
// shares), and a guest-pull or pause storage must name exactly this path.
func ContainerRootfs(id string) string { return ContainersDir + "/" + id + "/rootfs" }

// SharedRootfs is where the shim shares container id's root file system from the host.
func SharedRootfs(id string) string { return SharedDir + "/" + id + "/rootfs" }

// SharedVolume is where the shim shares the source of container id's n-th bind mount.
func SharedVolume(id string, n int) string {
	return SharedDir + "/" + id + "/mounts/" + strconv.Itoa(n)
}

// Storage drivers (Storage.driver).
const (
	// DriverVirtioFS mounts the virtio-fs share whose tag is Storage.source.
	DriverVirtioFS = "virtiofs"
	// DriverTmpfs mounts a tmpfs (guest memory).
	DriverTmpfs = "tmpfs"
	// DriverBind bind-mounts Storage.source, a path below SharedDir or below another storage.
	DriverBind = "bind"
	// DriverGuestPull is a container's root file system that the agent pulls itself:
	// Storage.source is the image reference as the pod wrote it; the digest is the spec's
	// ImageDigestAnnotation. Its mount point is ContainerRootfs(container id).
	DriverGuestPull = "image_guest_pull"
	// DriverPause is the sandbox container's root file system when it comes from the guest
	// image instead of the host: a read-only tree that holds only PauseCommand. Its mount
	// point is ContainerRootfs(container id).
	DriverPause = "pause_bundle"
)

// PauseCommand is the only program of the pause bundle (DriverPause): the guest image's
// pause process, which holds the pod's namespaces and reaps orphans.
const PauseCommand = "/pause"

// PauseUID is the user and group the pause bundle's process runs as (the shim sets them and
// a policy pins them), those of Kubernetes' pause images: nobody's, with no capability.
const PauseUID = 65535

// ImageDigestAnnotation is the OCI spec annotation that carries the digest of the image
// manifest a container runs ("sha256:<hex>"). The shim fills it from containerd's image store;
// the agent pulls a guest-pull image by it; the confidential baseline compares it with the
// digest its policy pins.
const ImageDigestAnnotation = "io.veil.image.digest"
