// Package hypervisor describes a VM independently of the program that runs it, and the small
// interface every driver (qemu, later clh) implements: launch, wait, stop, dial the agent,
// read the console. Drivers live in sub-packages; nothing outside them branches on the driver.
package hypervisor

import (
	"context"
	"net"

	"github.com/veil-runtime/veil/agent/api"
)

// TEE is the kind of trusted execution environment a VM is launched in.
type TEE string

const (
	TEENone TEE = api.TEENone // a plain VM: isolation only, no attestation
	TEESNP  TEE = api.TEESNP  // AMD SEV-SNP
	TEETDX  TEE = api.TEETDX  // Intel TDX
	TEESim  TEE = api.TEESim  // a simulated TEE for machines without one (see docs/)
)

// Accel selects QEMU's accelerator.
type Accel string

const (
	AccelAuto Accel = "auto" // KVM only when it can really boot a guest, else TCG
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg"
)

// Transport is how the host reaches the agent.
type Transport string

const (
	TransportVirtioSerial Transport = "virtio-serial" // a named virtserialport on a unix socket
	TransportVsock        Transport = "vsock"         // AF_VSOCK through vhost-vsock
	TransportHybridVsock  Transport = "hybrid-vsock"  // unix socket + "CONNECT <port>\n" (Cloud Hypervisor)
)

// SharedDir is a host directory shared into the guest through virtio-fs.
type SharedDir struct {
	Tag      string // the tag the guest mounts: mount -t virtiofs <Tag> <dir>
	HostPath string
	ReadOnly bool
}

// Disk is a raw host file attached as a virtio-blk device. The guest finds it by Serial in
// /sys/block/vd*/serial (there is no udev in the guest). Veil uses one to deliver initdata.
type Disk struct {
	Path     string
	ReadOnly bool
	Serial   string // at most 20 bytes (virtio-blk's limit)
}

// Network attaches the VM to an existing tap device.
type Network struct {
	TapName string
	MAC     string // the guest interface's MAC address
	// Netns is the path of the network namespace that holds the tap (a pod's, made by CNI),
	// or "" for the hypervisor's own. The driver opens the tap inside it and hands QEMU the
	// open file, since QEMU itself runs in the host's namespace.
	Netns string
}

// TEEConfig is the confidential part of a launch.
type TEEConfig struct {
	Kind TEE
	// HostData is measured into the launch: SNP HOST_DATA (32 bytes) or TDX MRCONFIGID (48
	// bytes); shorter values are zero-padded, longer ones refused.
	HostData []byte
	// Firmware is the OVMF build for SNP/TDX (required for them).
	Firmware string
	// SNPPolicy is the SEV-SNP guest policy (0 picks 0x30000: SMT allowed, no debug).
	SNPPolicy uint64
	// QuoteGenerationSocket is the TDX quote generation service's unix socket, if any.
	QuoteGenerationSocket string
}

// Config is everything a driver needs to launch one VM.
type Config struct {
	ID           string
	StateDir     string   // sockets and logs; created by Start, removed by Stop
	Kernel       string   // path to vmlinuz
	Initrd       string   // path to initrd.img
	KernelParams []string // appended to the driver's own command line
	MemoryMiB    uint32   // 0 picks 512
	VCPUs        uint32   // 0 picks 1
	Machine      string   // "q35" (default) or "microvm"
	Accel        Accel
	// TCGCacheMiB caps QEMU's TCG translation cache under TCG (0 picks DefaultTCGCacheMiB);
	// KVM has none.
	TCGCacheMiB uint32
	Transport   Transport // "" picks vsock when the host has /dev/vhost-vsock, else virtio-serial
	SharedDirs  []SharedDir
	Disks       []Disk
	Network     *Network
	TEE         TEEConfig
}

// VM is one launched virtual machine. Start runs once; Wait may be called by many.
type VM interface {
	// Start launches the VM and returns once the hypervisor runs (not once the guest booted).
	Start(ctx context.Context) error
	// Wait blocks until the VM has exited and returns why (nil for a clean power-off).
	Wait(ctx context.Context) error
	// Stop powers the VM off (gracefully, then by force when ctx ends) and removes every
	// process, socket and file it created. It is safe to call more than once.
	Stop(ctx context.Context) error
	// DialAgent connects to the agent, retrying until ctx ends. Each call gives a new
	// connection; one ttrpc client per connection.
	DialAgent(ctx context.Context) (net.Conn, error)
	// ConsoleLog is the path of the file that receives the guest's console.
	ConsoleLog() string
	// PID is the hypervisor process's pid (0 before Start).
	PID() int
}
