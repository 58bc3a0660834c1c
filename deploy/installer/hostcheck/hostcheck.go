// Package hostcheck finds what a node can run: KVM, AMD SEV-SNP and Intel TDX support in the
// host's kernel, QEMU (its version and the confidential-guest objects it knows), virtiofsd
// and containerd. It only reads: files under the host root and the output of the host's own
// programs (`qemu-system-x86_64 --version`, `-object help`, `containerd --version`, and QEMU
// run for a moment under KVM to see whether KVM works).
package hostcheck

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/veil-runtime/veil/deploy/installer/host"
)

// QEMU versions that know the confidential-guest objects (as hypervisor/qemu requires).
var (
	snpMinQEMU = Version{9, 1}
	tdxMinQEMU = Version{10, 1}
)

// virtiofsdPaths are where hypervisor/qemu looks for virtiofsd before $PATH.
var virtiofsdPaths = []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"}

// Version is a major.minor release; the zero Version is unknown.
type Version struct{ Major, Minor int }

func (v Version) String() string {
	if v == (Version{}) {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", v.Major, v.Minor)
}

// AtLeast reports whether v is o or later.
func (v Version) AtLeast(o Version) bool {
	return v.Major > o.Major || (v.Major == o.Major && v.Minor >= o.Minor)
}

// Line is one line of the report: what was checked, "yes", "no" or "warn", and why.
type Line struct{ Name, State, Detail string }

func (l Line) String() string { return fmt.Sprintf("%-11s %-4s %s", l.Name, l.State, l.Detail) }

// Report is what Probe found.
type Report struct {
	KVM, SNP, TDX bool
	// QEMU is the host path of qemu-system-x86_64 ("" when missing), QEMUText its version
	// line, and QEMUSNP/QEMUTDX whether it knows sev-snp-guest and tdx-guest.
	QEMU             string
	QEMUVersion      Version
	QEMUText         string
	QEMUSNP, QEMUTDX bool
	Virtiofsd        string
	// Containerd is the host path of containerd (the running one's when it runs).
	Containerd        string
	ContainerdVersion Version
	ContainerdText    string
	// ContainerdConfig is the --config the running containerd was started with ("": none,
	// so /etc/containerd/config.toml).
	ContainerdConfig string
	Lines            []Line

	noKVM string // why KVM cannot be used ("" when it can), for the snp and tdx lines
}

func (r *Report) add(name string, ok bool, format string, args ...any) {
	state := "no"
	if ok {
		state = "yes"
	}
	r.Lines = append(r.Lines, Line{name, state, fmt.Sprintf(format, args...)})
}

func (r *Report) warn(name, format string, args ...any) {
	r.Lines = append(r.Lines, Line{name, "warn", fmt.Sprintf(format, args...)})
}

// Probe checks the node h. It never fails: what it cannot find or run is a "no" line.
func Probe(ctx context.Context, h host.Host) *Report {
	r := &Report{}
	r.kvm(ctx, h)
	r.snp(h)
	r.tdx(h)
	r.qemu(ctx, h)
	r.virtiofsd(h)
	r.containerd(ctx, h)
	return r
}

// KVMProbeTimeout bounds the KVM probe: a working KVM runs QEMU's firmware to its reboot in
// well under a second; a broken one makes QEMU abort at once, or hang.
var KVMProbeTimeout = 15 * time.Second

// KVMProbeArgs are the arguments of the host's qemu-system-x86_64 for the KVM probe: no disk,
// no kernel, so the firmware finds no bootable device and reboots at once
// (reboot-timeout=0), which -no-reboot turns into QEMU's exit with status 0. `-cpu host` as
// the shim's own probe (hypervisor/qemu, accel = "auto"): some hosts have a /dev/kvm on
// which QEMU cannot set up such a vCPU ("failed to set MSR ...", then an abort).
var KVMProbeArgs = []string{"-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "64M",
	"-nodefaults", "-no-user-config", "-display", "none", "-serial", "none", "-monitor", "none",
	"-no-reboot", "-boot", "strict=on,reboot-timeout=0"}

func (r *Report) kvm(ctx context.Context, h host.Host) {
	fi, err := os.Stat(h.Path("/dev/kvm"))
	if err != nil {
		r.noKVM = "no /dev/kvm"
		r.add("kvm", false, "/dev/kvm missing: VMs run under TCG emulation (slow; no SNP or TDX)")
		return
	}
	present := "/dev/kvm present"
	if fi.Mode()&os.ModeCharDevice == 0 {
		present = fmt.Sprintf("/dev/kvm exists (%v, not a character device)", fi.Mode().Type())
	}
	qemu := h.LookPath("qemu-system-x86_64")
	if qemu == "" {
		r.KVM = true
		r.add("kvm", true, "%s (no QEMU to try it with)", present)
		return
	}
	if err := probeKVM(ctx, h, qemu); err != nil {
		r.noKVM = "KVM unusable"
		r.add("kvm", false, "%s, but unusable: QEMU cannot run a guest under KVM here (%v); "+
			"VMs run under TCG emulation (slow; no SNP or TDX)", present, err)
		return
	}
	r.KVM = true
	r.add("kvm", true, "%s; QEMU ran a guest's firmware under KVM", present)
}

// probeKVM runs the host's QEMU with KVMProbeArgs; nil when it exited with status 0.
func probeKVM(ctx context.Context, h host.Host, qemu string) error {
	ctx, cancel := context.WithTimeout(ctx, KVMProbeTimeout)
	defer cancel()
	_, err := h.Output(ctx, qemu, KVMProbeArgs...)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("no exit within %s", KVMProbeTimeout)
	}
	// Output's error repeats the command line: keep how QEMU ended and what it said, on one line.
	msg := strings.TrimPrefix(err.Error(), strings.Join(append([]string{qemu}, KVMProbeArgs...), " ")+": ")
	return fmt.Errorf("%s", strings.Join(strings.Fields(msg), " "))
}

// param reads a kvm module parameter: "Y"/"1" true, "N"/"0" false, "" when absent.
func param(h host.Host, module, name string) string {
	return h.ReadTrim("/sys/module/" + module + "/parameters/" + name)
}

func yes(v string) bool { return v == "Y" || v == "y" || v == "1" }

func (r *Report) snp(h host.Host) {
	dev := h.Exists("/dev/sev")
	p := param(h, "kvm_amd", "sev_snp")
	var why []string
	if !dev {
		why = append(why, "/dev/sev missing")
	}
	switch {
	case !h.Exists("/sys/module/kvm_amd"):
		why = append(why, "kvm_amd not loaded")
	case p == "":
		why = append(why, "kvm_amd has no sev_snp parameter (kernel too old for SNP hosts)")
	case !yes(p):
		why = append(why, "kvm_amd sev_snp="+p)
	}
	if !r.KVM {
		why = append(why, r.noKVM)
	}
	r.SNP = len(why) == 0
	if r.SNP {
		r.add("snp", true, "AMD SEV-SNP host: /dev/sev, kvm_amd sev_snp=%s", p)
		return
	}
	r.add("snp", false, "%s", strings.Join(why, "; "))
}

func (r *Report) tdx(h host.Host) {
	p := param(h, "kvm_intel", "tdx")
	var why string
	switch {
	case !h.Exists("/sys/module/kvm_intel"):
		why = "kvm_intel not loaded"
	case p == "":
		why = "kvm_intel has no tdx parameter (kernel without TDX host support)"
	case !yes(p):
		why = "kvm_intel tdx=" + p
	case !r.KVM:
		why = r.noKVM
	}
	r.TDX = why == ""
	if r.TDX {
		r.add("tdx", true, "Intel TDX host: kvm_intel tdx=%s", p)
		return
	}
	r.add("tdx", false, "%s", why)
}

var qemuVersion = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)[^\s]*`)

func (r *Report) qemu(ctx context.Context, h host.Host) {
	r.QEMU = h.LookPath("qemu-system-x86_64")
	if r.QEMU == "" {
		r.add("qemu", false, "no qemu-system-x86_64 in %s: no Veil handler can run", strings.Join(host.SearchPath, ":"))
		return
	}
	out, err := h.Output(ctx, r.QEMU, "--version")
	if m := qemuVersion.FindStringSubmatch(string(out)); err == nil && m != nil {
		r.QEMUVersion = Version{atoi(m[1]), atoi(m[2])}
		r.QEMUText = strings.TrimPrefix(m[0], "QEMU emulator version ")
	} else {
		r.warn("qemu", "%s --version: %s", r.QEMU, errText(err, out))
		return
	}
	// The objects QEMU knows; older builds without -object help are judged by version.
	objs, err := h.Output(ctx, r.QEMU, "-object", "help")
	how := "-object help"
	if err == nil && strings.Contains(string(objs), "memory-backend") {
		r.QEMUSNP = hasWord(string(objs), "sev-snp-guest")
		r.QEMUTDX = hasWord(string(objs), "tdx-guest")
	} else {
		how = "by version"
		r.QEMUSNP = r.QEMUVersion.AtLeast(snpMinQEMU)
		r.QEMUTDX = r.QEMUVersion.AtLeast(tdxMinQEMU)
	}
	r.add("qemu", true, "%s %s; sev-snp-guest %s, tdx-guest %s (%s; SNP needs %s+, TDX %s+)",
		r.QEMU, r.QEMUText, yesNo(r.QEMUSNP), yesNo(r.QEMUTDX), how, snpMinQEMU, tdxMinQEMU)
}

func (r *Report) virtiofsd(h host.Host) {
	r.Virtiofsd = h.Find(virtiofsdPaths...)
	if r.Virtiofsd == "" {
		r.Virtiofsd = h.LookPath("virtiofsd")
	}
	if r.Virtiofsd == "" {
		r.add("virtiofsd", false, "not in %s or %s: the shim cannot share root filesystems",
			strings.Join(virtiofsdPaths, ", "), strings.Join(host.SearchPath, ":"))
		return
	}
	r.add("virtiofsd", true, "%s", r.Virtiofsd)
}

var containerdVersion = regexp.MustCompile(`\bv?(\d+)\.(\d+)\.\d+[^\s]*`)

func (r *Report) containerd(ctx context.Context, h host.Host) {
	running := ""
	if ps, err := h.Named("containerd"); err == nil {
		for _, p := range ps {
			if p.Exe != "" && h.Exists(p.Exe) {
				running, r.ContainerdConfig = p.Exe, configArg(p.Argv)
				break
			}
		}
	}
	r.Containerd = running
	if r.Containerd == "" {
		r.Containerd = h.LookPath("containerd")
	}
	if r.Containerd == "" {
		r.add("containerd", false, "no containerd running or in %s", strings.Join(host.SearchPath, ":"))
		return
	}
	out, err := h.Output(ctx, r.Containerd, "--version")
	// "containerd github.com/containerd/containerd/v2 v2.4.2 ...", "containerd containerd.io 1.7.27 ..."
	fields := strings.Fields(string(out))
	var m []string
	if err == nil && len(fields) > 2 {
		m = containerdVersion.FindStringSubmatch(strings.Join(fields[2:], " "))
	}
	if m == nil {
		r.warn("containerd", "%s --version: %s", r.Containerd, errText(err, out))
		return
	}
	r.ContainerdVersion = Version{atoi(m[1]), atoi(m[2])}
	r.ContainerdText = m[0]
	state := "installed"
	if running != "" {
		state = "running"
		if r.ContainerdConfig != "" {
			state += " with --config " + r.ContainerdConfig
		}
	}
	switch {
	case r.ContainerdVersion.Major >= 2:
		r.add("containerd", true, "%s %s (%s): drop-in with config version 3", r.Containerd, m[0], state)
	case r.ContainerdVersion.AtLeast(Version{1, 6}):
		r.add("containerd", true, "%s %s (%s): drop-in with config version 2", r.Containerd, m[0], state)
	default:
		r.add("containerd", false, "%s %s (%s): Veil needs containerd 1.6 or later", r.Containerd, m[0], state)
	}
}

// configArg finds containerd's --config (-c) in its command line; "" when absent or relative.
func configArg(argv []string) string {
	for i, a := range argv {
		var v string
		switch {
		case (a == "--config" || a == "-c" || a == "-config") && i+1 < len(argv):
			v = argv[i+1]
		case strings.HasPrefix(a, "--config="):
			v = strings.TrimPrefix(a, "--config=")
		case strings.HasPrefix(a, "-c="):
			v = strings.TrimPrefix(a, "-c=")
		default:
			continue
		}
		if strings.HasPrefix(v, "/") {
			return v
		}
		return ""
	}
	return ""
}

func hasWord(text, word string) bool {
	for _, f := range strings.Fields(text) {
		if strings.Trim(f, ",") == word {
			return true
		}
	}
	return false
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

func errText(err error, out []byte) string {
	if err != nil {
		return err.Error()
	}
	s := strings.TrimSpace(string(out))
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return fmt.Sprintf("cannot read a version from %q", s)
}
