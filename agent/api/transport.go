package api

// Where the host reaches the agent: the guest listens on each that exists (agent/transport),
// the host dials one (hypervisor/transport) and names the port on QEMU's command line
// (hypervisor/qemu).
const (
	// AgentVsockPort is the vsock port the agent listens on (vsock and hybrid vsock).
	AgentVsockPort = 1024
	// AgentPortName is the name of the agent's virtio-serial port: QEMU's virtserialport
	// name=, which the guest finds in /sys/class/virtio-ports/*/name.
	AgentPortName = "veil.agent"
)
