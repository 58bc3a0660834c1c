package installer

import (
	"fmt"
	"strings"

	"github.com/veil-runtime/veil/deploy/installer/containerdcfg"
	"github.com/veil-runtime/veil/deploy/installer/hostcheck"
	"github.com/veil-runtime/veil/deploy/installer/nodelabel"
	"github.com/veil-runtime/veil/deploy/installer/payload"
)

// Where things go on the host, under InstallDir; the payload has the same layout.
const (
	InstallDir     = "/opt/veil"
	ShimRel        = "bin/containerd-shim-veil-v2"
	CtlRel         = "bin/veil-ctl"
	ImageRel       = "share/veil/image"
	FirmwareRelDir = "share/veil/firmware"
	ConfigRelDir   = "share/defaults/veil"
	StateRel       = ".veil-deploy/state.json"
)

// Node labels (the RuntimeClasses' nodeSelectors use the tee.* ones).
const (
	LabelRuntime = nodelabel.Prefix + "runtime"
	LabelKVM     = nodelabel.Prefix + "kvm"
)

// Handler is one runtime handler: the name a RuntimeClass's handler and containerd's
// runtimes use, its TEE and its node label.
type Handler struct {
	Name      string
	TEE       string
	GuestPull bool
	Accel     string // "" keeps the base configuration's ("auto")
	Label     string
	Firmware  string // relative path of its firmware in the payload ("" for none)
}

// Handlers are every handler Veil knows, in install order.
var Handlers = []Handler{
	{Name: "veil", TEE: "none", Label: nodelabel.Prefix + "tee.none"},
	{Name: "veil-sim", TEE: "sim", GuestPull: true, Label: nodelabel.Prefix + "tee.sim"},
	{Name: "veil-snp", TEE: "snp", GuestPull: true, Accel: "kvm", Label: nodelabel.Prefix + "tee.snp",
		Firmware: FirmwareRelDir + "/OVMF-snp.fd"},
	{Name: "veil-tdx", TEE: "tdx", GuestPull: true, Accel: "kvm", Label: nodelabel.Prefix + "tee.tdx",
		Firmware: FirmwareRelDir + "/OVMF-tdx.fd"},
}

// ConfigRel is the handler's configuration file, relative to InstallDir.
func (h Handler) ConfigRel() string { return ConfigRelDir + "/configuration-" + h.Name + ".toml" }

// ConfigPath is the handler's configuration file on the host (the shim's ConfigPath).
func (h Handler) ConfigPath() string { return InstallDir + "/" + h.ConfigRel() }

// Labels lists every label the installer sets.
func Labels() []string {
	out := []string{LabelRuntime, LabelKVM}
	for _, h := range Handlers {
		out = append(out, h.Label)
	}
	return out
}

// Choice says whether a handler is installed on this node, and why not.
type Choice struct {
	Handler
	OK  bool
	Why string
}

// Choose decides which handlers this node can run: veil and veil-sim need QEMU and
// virtiofsd, veil-sim also the explicit enableSim, veil-snp an SNP host and a QEMU that
// knows sev-snp-guest, veil-tdx a TDX host and a QEMU that knows tdx-guest; each needs its
// configuration in the payload m (nil: not checked).
func Choose(r *hostcheck.Report, m *payload.Manifest, enableSim bool) []Choice {
	var out []Choice
	for _, h := range Handlers {
		var why []string
		if r.QEMU == "" {
			why = append(why, "no QEMU on the host")
		}
		if r.Virtiofsd == "" {
			why = append(why, "no virtiofsd on the host")
		}
		switch h.TEE {
		case "sim":
			if !enableSim {
				why = append(why, "not enabled (--enable-sim or VEIL_ENABLE_SIM=true: a simulated TEE, for development and CI only, never production)")
			}
		case "snp":
			if !r.SNP {
				why = append(why, "not an SNP host")
			}
			if r.QEMU != "" && !r.QEMUSNP {
				why = append(why, "QEMU "+r.QEMUText+" has no sev-snp-guest")
			}
		case "tdx":
			if !r.TDX {
				why = append(why, "not a TDX host")
			}
			if r.QEMU != "" && !r.QEMUTDX {
				why = append(why, "QEMU "+r.QEMUText+" has no tdx-guest")
			}
		}
		if m != nil && !m.Has(h.ConfigRel()) {
			w := fmt.Sprintf("the payload has no %s", h.ConfigRel())
			if h.Firmware != "" {
				w += fmt.Sprintf(" (built without --firmware-%s)", h.TEE)
			}
			why = append(why, w)
		}
		c := Choice{Handler: h, OK: len(why) == 0, Why: strings.Join(why, "; ")}
		out = append(out, c)
	}
	return out
}

// Chosen returns the handlers of cs that are installed.
func Chosen(cs []Choice) []Handler {
	var out []Handler
	for _, c := range cs {
		if c.OK {
			out = append(out, c.Handler)
		}
	}
	return out
}

// NodeLabels are the labels for a node with report r and the installed handlers.
func NodeLabels(r *hostcheck.Report, installed []Handler) map[string]string {
	l := map[string]string{
		LabelRuntime: fmt.Sprint(len(installed) > 0),
		LabelKVM:     fmt.Sprint(r.KVM),
	}
	for _, h := range Handlers {
		l[h.Label] = "false"
	}
	for _, h := range installed {
		l[h.Label] = "true"
	}
	return l
}

// containerdSpec is the drop-in's content for the installed handlers.
func containerdSpec(installed []Handler) containerdcfg.Spec {
	s := containerdcfg.Spec{ShimPath: InstallDir + "/" + ShimRel}
	for _, h := range installed {
		s.Runtimes = append(s.Runtimes, containerdcfg.Runtime{Name: h.Name, ConfigPath: h.ConfigPath()})
	}
	return s
}
