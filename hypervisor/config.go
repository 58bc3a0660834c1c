package hypervisor

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"

	"github.com/veil-runtime/veil/attestation/layout"
)

// Errors shared by every driver.
var (
	ErrAlreadyStarted = errors.New("hypervisor: VM already started")
	ErrNotStarted     = errors.New("hypervisor: VM not started")
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultMemoryMiB = 512
	DefaultVCPUs     = 1
	DefaultMachine   = "q35"
	// DefaultTCGCacheMiB caps the TCG translation cache: QEMU's own default (up to 1 GiB)
	// lets it grow into most of a pod's memory cost (docs/benchmarks.md).
	DefaultTCGCacheMiB = 64
	// DefaultSNPPolicy allows SMT and forbids debugging (bit 17 is reserved and must be 1).
	DefaultSNPPolicy = 0x30000
)

// MaxTagLen is the longest virtio-fs tag the device accepts.
const MaxTagLen = 36

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// WithDefaults returns c with its zero fields replaced by the documented defaults. Transport
// is left alone: which one "" means depends on the host, so the driver decides.
func (c Config) WithDefaults() Config {
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.VCPUs == 0 {
		c.VCPUs = DefaultVCPUs
	}
	if c.Machine == "" {
		c.Machine = DefaultMachine
	}
	if c.TCGCacheMiB == 0 {
		c.TCGCacheMiB = DefaultTCGCacheMiB
	}
	if c.Accel == "" {
		c.Accel = AccelAuto
	}
	if c.TEE.Kind == "" {
		c.TEE.Kind = TEENone
	}
	if c.TEE.Kind == TEESNP && c.TEE.SNPPolicy == 0 {
		c.TEE.SNPPolicy = DefaultSNPPolicy
	}
	return c
}

// Validate checks the rules that hold for every driver and returns all failures together.
// Drivers add their own (machine types, transports they support, socket path lengths).
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !idPattern.MatchString(c.ID) {
		add("id %q: want 1-64 of [A-Za-z0-9_.-], starting with a letter or digit", c.ID)
	}
	if !filepath.IsAbs(c.StateDir) {
		add("state dir %q: want an absolute path", c.StateDir)
	}
	if c.Kernel == "" && (c.Initrd != "" || len(c.KernelParams) > 0) {
		add("initrd or kernel params given without a kernel")
	}
	for name, p := range map[string]string{"kernel": c.Kernel, "initrd": c.Initrd, "firmware": c.TEE.Firmware} {
		if p != "" && !filepath.IsAbs(p) {
			add("%s %q: want an absolute path", name, p)
		}
	}
	if c.MemoryMiB < 64 {
		add("memory %d MiB: want at least 64", c.MemoryMiB)
	}
	if c.VCPUs > 255 {
		add("vcpus %d: want at most 255", c.VCPUs)
	}
	switch c.Accel {
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		add("accel %q: want auto, kvm or tcg", c.Accel)
	}
	switch c.Transport {
	case "", TransportVirtioSerial, TransportVsock, TransportHybridVsock:
	default:
		add("transport %q: want virtio-serial, vsock or hybrid-vsock", c.Transport)
	}
	errs = append(errs, validateShares(c.SharedDirs)...)
	errs = append(errs, validateDisks(c.Disks)...)
	errs = append(errs, validateNetwork(c.Network)...)
	errs = append(errs, c.validateTEE()...)
	return errors.Join(errs...)
}

func validateShares(shares []SharedDir) []error {
	var errs []error
	seen := map[string]bool{}
	for i, s := range shares {
		if s.Tag == "" || len(s.Tag) > MaxTagLen {
			errs = append(errs, fmt.Errorf("shared dir %d: tag %q: want 1-%d bytes", i, s.Tag, MaxTagLen))
		}
		if seen[s.Tag] {
			errs = append(errs, fmt.Errorf("shared dir %d: tag %q used twice", i, s.Tag))
		}
		seen[s.Tag] = true
		if !filepath.IsAbs(s.HostPath) {
			errs = append(errs, fmt.Errorf("shared dir %q: host path %q: want an absolute path", s.Tag, s.HostPath))
		}
	}
	return errs
}

// MaxSerialLen is the longest virtio-blk serial.
const MaxSerialLen = 20

func validateDisks(disks []Disk) []error {
	var errs []error
	for i, d := range disks {
		if !filepath.IsAbs(d.Path) {
			errs = append(errs, fmt.Errorf("disk %d: path %q: want an absolute path", i, d.Path))
		}
		if d.Serial == "" || len(d.Serial) > MaxSerialLen || !serialPattern.MatchString(d.Serial) {
			errs = append(errs, fmt.Errorf("disk %d: serial %q: want 1-%d letters, digits, '-', '_' or '.'", i, d.Serial, MaxSerialLen))
		}
	}
	return errs
}

var serialPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func validateNetwork(n *Network) []error {
	if n == nil {
		return nil
	}
	var errs []error
	if n.TapName == "" || len(n.TapName) > 15 {
		errs = append(errs, fmt.Errorf("network: tap name %q: want 1-15 bytes", n.TapName))
	}
	mac, err := net.ParseMAC(n.MAC)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("network: mac %q: %w", n.MAC, err))
	case len(mac) != 6 || mac[0]&1 != 0:
		errs = append(errs, fmt.Errorf("network: mac %q: want a 6-byte unicast address", n.MAC))
	}
	return errs
}

func (c Config) validateTEE() []error {
	t := c.TEE
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("tee %s: "+format, append([]any{t.Kind}, args...)...))
	}
	switch t.Kind {
	case TEESNP, TEETDX:
		if t.Firmware == "" {
			add("needs firmware (an OVMF build for %s)", t.Kind)
		}
		if c.Accel == AccelTCG {
			add("needs KVM, not tcg")
		}
		if limit := t.HostDataSize(); len(t.HostData) > limit {
			add("host data is %d bytes: want at most %d", len(t.HostData), limit)
		}
	case TEENone, TEESim:
		if len(t.HostData) > 0 && t.Kind == TEENone {
			add("host data given, but a plain VM measures nothing")
		}
		if len(t.HostData) > layout.TDXMRConfigIDSize {
			add("host data is %d bytes: want at most %d", len(t.HostData), layout.TDXMRConfigIDSize)
		}
	default:
		return []error{fmt.Errorf("tee %q: want none, snp, tdx or sim", t.Kind)}
	}
	if t.SNPPolicy != 0 && t.Kind != TEESNP {
		add("SNP policy given for another TEE")
	}
	if t.QuoteGenerationSocket != "" && t.Kind != TEETDX {
		add("quote generation socket given for another TEE")
	}
	return errs
}

// HostDataSize is how many bytes of host data the TEE measures: 32 for SNP, 48 for TDX, 0
// for a plain VM and for sim (whose host-data delivery is not settled yet; it takes up to 48).
func (t TEEConfig) HostDataSize() int {
	switch t.Kind {
	case TEESNP:
		return layout.SNPHostDataSize
	case TEETDX:
		return layout.TDXMRConfigIDSize
	}
	return 0
}

// PaddedHostData is HostData zero-padded to HostDataSize bytes, or nil when HostData is empty.
func (t TEEConfig) PaddedHostData() []byte {
	if len(t.HostData) == 0 {
		return nil
	}
	b := make([]byte, max(t.HostDataSize(), len(t.HostData)))
	copy(b, t.HostData)
	return b
}
