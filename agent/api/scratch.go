package api

// The scratch disk: a virtio-blk disk the host may give a VM for the guest's writable data,
// backed on the host by a sparse file. The guest encrypts it with dm-crypt under a key it
// makes at each boot and never lets out (agent/scratch, docs/scratch.md), makes a file system
// on it and keeps there what it would otherwise keep in RAM: the image cache (ImagesDir) and
// the containers' roots (ContainersDir).
const (
	// ScratchSerial is the scratch disk's virtio-blk serial: the guest takes the one disk
	// with this serial (two are an error) and uses no other.
	ScratchSerial = "veil-scratch"
	// ScratchDir is where the guest mounts the scratch file system: outside GuestRoot, so that
	// no host-named path reaches it. ImagesDir and ContainersDir are bind mounts of its
	// ScratchImages and ScratchContainers subdirectories.
	ScratchDir = "/run/veil-scratch"
	// ScratchImages and ScratchContainers are the directories of ScratchDir that become
	// ImagesDir and ContainersDir.
	ScratchImages     = ScratchDir + "/images"
	ScratchContainers = ScratchDir + "/containers"
	// ScratchMapperName is the device-mapper name of the decrypted scratch disk
	// (/dev/mapper/veil-scratch).
	ScratchMapperName = "veil-scratch"
)
