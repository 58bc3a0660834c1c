package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/hypervisor"
)

// Files inside the state directory. Names are short: unix socket paths are limited to 107
// bytes.
const (
	qmpSocket   = "qmp.sock"
	agentSocket = "agent.sock"
	consoleFile = "console.log"
)

func fsSocket(i int) string { return "fs" + strconv.Itoa(i) + ".sock" }

// Host holds what the command line depends on beyond the Config: facts that Start resolves
// on the running host.
type Host struct {
	Accel    hypervisor.Accel // kvm or tcg (never auto)
	GuestCID uint32           // the guest's vsock context id (vsock transport only)
	VhostFD  int              // fd of an open /dev/vhost-vsock that holds GuestCID in QEMU, or 0
	CPU      string           // overrides the -cpu model when set
	TapFD    int              // fd of the open tap device (Network.Netns), or 0: QEMU opens it by name
}

// CommandLine is QEMU's argument list (without the program name) for cfg on host. It is a
// pure function of its inputs: Start resolves Host and runs exactly this.
func CommandLine(cfg hypervisor.Config, host Host) ([]string, error) {
	cfg, err := normalize(cfg)
	if err != nil {
		return nil, err
	}
	if host.Accel != hypervisor.AccelKVM && host.Accel != hypervisor.AccelTCG {
		return nil, fmt.Errorf("qemu: host accel %q: want kvm or tcg", host.Accel)
	}
	if cfg.Transport == hypervisor.TransportVsock && host.GuestCID < 3 {
		return nil, fmt.Errorf("qemu: guest cid %d: want 3 or more", host.GuestCID)
	}
	b := &builder{cfg: cfg, host: host, backend: backendID(cfg), cgs: cgsID(cfg.TEE.Kind)}
	b.base()
	b.memory()
	b.teeObjects()
	b.boot()
	b.agent()
	b.shares()
	b.disks()
	b.network()
	return b.args, nil
}

// builder accumulates arguments; each method adds one concern.
type builder struct {
	cfg     hypervisor.Config
	host    Host
	args    []string
	backend string // id of the memory backend object, if any
	cgs     string // id of the confidential-guest-support object, if any
}

func (b *builder) add(args ...string) { b.args = append(b.args, args...) }

func (b *builder) file(name string) string { return filepath.Join(b.cfg.StateDir, name) }

func (b *builder) base() {
	b.add("-name", "veil-"+b.cfg.ID)
	b.add("-machine", b.machineOption())
	b.add("-nodefaults", "-no-user-config", "-nographic", "-no-reboot")
	b.add("-S") // paused until Start has connected to QMP
	if b.host.Accel == hypervisor.AccelTCG {
		b.add("-accel", fmt.Sprintf("tcg,tb-size=%d", b.cfg.TCGCacheMiB))
	} else {
		b.add("-accel", string(b.host.Accel))
	}
	b.add("-cpu", b.cpu())
	b.add("-m", fmt.Sprintf("%dM", b.cfg.MemoryMiB))
	b.add("-smp", strconv.Itoa(int(b.cfg.VCPUs)))
	b.add("-chardev", "socket,id=qmp,server=on,wait=off,path="+escape(b.file(qmpSocket)))
	b.add("-mon", "chardev=qmp,mode=control")
	b.add("-chardev", "file,id=console,path="+escape(b.file(consoleFile)))
	b.add("-serial", "chardev:console")
}

func (b *builder) cpu() string {
	switch {
	case b.host.CPU != "":
		return b.host.CPU
	case b.host.Accel == hypervisor.AccelTCG:
		return "max"
	case b.cfg.TEE.Kind == hypervisor.TEESNP:
		return snpCPU
	}
	return "host"
}

// backendID names the shared memfd memory backend that vhost-user (virtio-fs) and SNP need,
// or is "" when guest RAM needs no backend object.
func backendID(cfg hypervisor.Config) string {
	switch {
	case cfg.TEE.Kind == hypervisor.TEESNP:
		return "ram1"
	case len(cfg.SharedDirs) > 0:
		return "mem"
	}
	return ""
}

func (b *builder) memory() {
	if b.backend != "" {
		b.add("-object", fmt.Sprintf("memory-backend-memfd,id=%s,size=%dM,share=on", b.backend, b.cfg.MemoryMiB))
	}
}

func (b *builder) machineOption() string {
	opts := []string{b.cfg.Machine}
	if b.cfg.Machine == "microvm" {
		opts = append(opts, "pcie=on") // virtio-pci devices need the PCIe host bridge
	}
	if b.cgs != "" {
		opts = append(opts, "confidential-guest-support="+b.cgs)
	}
	if b.backend != "" {
		opts = append(opts, "memory-backend="+b.backend)
	}
	return strings.Join(opts, ",")
}

func (b *builder) boot() {
	if b.cfg.TEE.Firmware != "" {
		b.add("-bios", b.cfg.TEE.Firmware)
	}
	if b.cfg.Kernel == "" {
		return
	}
	b.add("-kernel", b.cfg.Kernel)
	if b.cfg.Initrd != "" {
		b.add("-initrd", b.cfg.Initrd)
	}
	b.add("-append", strings.Join(append(kernelParams(), b.cfg.KernelParams...), " "))
}

// kernelParams are the driver's own: the console on the first serial port, and a panic
// reboots at once, which -no-reboot turns into QEMU exiting.
func kernelParams() []string {
	return []string{"console=ttyS0", "panic=-1"}
}

func (b *builder) agent() {
	if b.cfg.Transport == hypervisor.TransportVsock {
		dev := fmt.Sprintf("vhost-vsock-pci,id=vsock0,guest-cid=%d", b.host.GuestCID)
		if b.host.VhostFD > 0 {
			dev += ",vhostfd=" + strconv.Itoa(b.host.VhostFD)
		}
		b.add("-device", dev+b.virtioOpts())
		return
	}
	b.add("-device", "virtio-serial-pci,id=vser0"+b.virtioOpts())
	b.add("-chardev", "socket,id=agent,server=on,wait=off,path="+escape(b.file(agentSocket)))
	b.add("-device", "virtserialport,bus=vser0.0,chardev=agent,name="+api.AgentPortName)
}

func (b *builder) shares() {
	for i, s := range b.cfg.SharedDirs {
		id := "fs" + strconv.Itoa(i)
		b.add("-chardev", "socket,id="+id+",path="+escape(b.file(fsSocket(i))))
		b.add("-device", "vhost-user-fs-pci,chardev="+id+",tag="+escape(s.Tag)+b.virtioOpts())
	}
}

func (b *builder) disks() {
	for i, d := range b.cfg.Disks {
		id := "disk" + strconv.Itoa(i)
		drive := "file=" + escape(d.Path) + ",if=none,id=" + id + ",format=raw"
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		b.add("-drive", drive)
		b.add("-device", "virtio-blk-pci,drive="+id+",serial="+d.Serial+b.virtioOpts())
	}
}

func (b *builder) network() {
	n := b.cfg.Network
	if n == nil {
		return
	}
	if b.host.TapFD > 0 {
		b.add("-netdev", "tap,id=net0,fd="+strconv.Itoa(b.host.TapFD))
	} else {
		b.add("-netdev", "tap,id=net0,ifname="+escape(n.TapName)+",script=no,downscript=no")
	}
	b.add("-device", "virtio-net-pci,netdev=net0,mac="+n.MAC+",romfile="+b.virtioOpts())
}

// virtioOpts makes virtio devices usable by a confidential guest, which only accepts
// devices that go through the DMA API (VIRTIO_F_ACCESS_PLATFORM).
func (b *builder) virtioOpts() string {
	if b.cfg.TEE.Kind == hypervisor.TEESNP || b.cfg.TEE.Kind == hypervisor.TEETDX {
		return ",disable-legacy=on,iommu_platform=on"
	}
	return ""
}

// escape doubles commas, QEMU's escape inside option lists.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
