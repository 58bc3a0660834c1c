package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

// Defaults of the options.
const (
	DefaultQEMU         = "qemu-system-x86_64"
	DefaultProbeDir     = "/run/veil/kvm-probe"
	DefaultProbeTimeout = 10 * time.Second
	// defaultStopTimeout bounds Stop's wait for a quit when its ctx has no deadline.
	defaultStopTimeout = 10 * time.Second
)

// virtiofsdPaths are searched in order: the Rust virtiofsd's Debian location first, then
// the C one shipped with QEMU up to 7.2, then $PATH.
var virtiofsdPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"}

// Option adjusts how a VM is run (not what it is: that is the Config).
type Option func(*options)

type options struct {
	qemu           string
	virtiofsd      string
	probeDir       string
	probeTimeout   time.Duration
	powerdownGrace time.Duration
	cpu            string
}

// WithProbeCache sets the directory that caches the KVM probe's answers (default
// /run/veil/kvm-probe, which a reboot clears).
func WithProbeCache(dir string) Option { return func(o *options) { o.probeDir = dir } }

// WithPowerdownGrace makes Stop press the ACPI power button first and give the guest d to
// power off before QEMU is told to quit. The default, 0, skips it: Veil's guest powers off
// when the agent is asked to, and a guest without acpid ignores the button anyway.
func WithPowerdownGrace(d time.Duration) Option { return func(o *options) { o.powerdownGrace = d } }

func newOptions(opts []Option) options {
	o := options{probeDir: DefaultProbeDir, probeTimeout: DefaultProbeTimeout}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// qemuBinary resolves the QEMU binary.
func (o options) qemuBinary() (string, error) {
	name := o.qemu
	if name == "" {
		name = DefaultQEMU
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("qemu: find %s: %w", name, err)
	}
	return p, nil
}

// virtiofsdBinary resolves the virtiofsd binary.
func (o options) virtiofsdBinary() (string, error) {
	if o.virtiofsd != "" {
		return o.virtiofsd, nil
	}
	for _, p := range virtiofsdPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("virtiofsd")
	if err != nil {
		return "", fmt.Errorf("qemu: no virtiofsd in %v or $PATH: %w", virtiofsdPaths, err)
	}
	return p, nil
}
