package api

// The guest image's files that the image builder (guest-image, a host tool) places and the
// guest's init and agent use.
const (
	// ModulesListPath lists the kernel modules init loads: absolute paths of decompressed .ko
	// files, one a line, in dependency order.
	ModulesListPath = "/etc/veil/modules.list"
	// AgentPath is where the image installs the agent when the agent is not /init; init
	// starts it from there.
	AgentPath = "/usr/bin/veil-agent"
	// MkfsPath is the guest's mke2fs (busybox-static's: busybox picks its applet from
	// argv[0]'s base name), which makes the scratch disk's file system.
	MkfsPath = "/usr/sbin/mke2fs"
)
