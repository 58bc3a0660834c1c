package hostcheck_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/deploy/installer/hostcheck"
	"github.com/veil-runtime/veil/deploy/installer/internal/fakehost"
)

const (
	ctd2  = "containerd github.com/containerd/containerd/v2 v2.4.2 0123abc"
	ctd16 = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
	ctd15 = "containerd containerd.io 1.5.9 abc"
)

// lines maps each check's name to "state detail".
func lines(r *hostcheck.Report) map[string]string {
	m := map[string]string{}
	for _, l := range r.Lines {
		m[l.Name] = l.State + " " + l.Detail
	}
	return m
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		name       string
		o          fakehost.Options
		kvm        bool
		snp, tdx   bool
		qsnp, qtdx bool
		want       map[string]string // check name -> substring of its line
	}{
		{
			name: "snp host", kvm: true, snp: true, qsnp: true,
			o: fakehost.Options{KVM: true, SEV: true, AMD: "Y", QEMU: "10.0.2", Objects: []string{"sev-guest", "sev-snp-guest"},
				Virtiofsd: true, Containerd: ctd2},
			want: map[string]string{"snp": "yes AMD SEV-SNP host: /dev/sev, kvm_amd sev_snp=Y", "tdx": "no kvm_intel not loaded",
				"qemu":       "yes /usr/bin/qemu-system-x86_64 10.0.2; sev-snp-guest yes, tdx-guest no (-object help",
				"containerd": "yes /usr/bin/containerd v2.4.2 (installed): drop-in with config version 3",
				"virtiofsd":  "yes /usr/lib/qemu/virtiofsd"},
		},
		{
			name: "tdx host", kvm: true, tdx: true, qtdx: true,
			o: fakehost.Options{KVM: true, TDX: "Y", QEMU: "10.1.0", Objects: []string{"tdx-guest"}, Virtiofsd: true, Containerd: ctd16},
			want: map[string]string{"tdx": "yes Intel TDX host: kvm_intel tdx=Y", "snp": "no /dev/sev missing; kvm_amd not loaded",
				"containerd": "yes /usr/bin/containerd 1.6.20~ds1 (installed): drop-in with config version 2"},
		},
		{
			name: "snp disabled in kvm_amd", kvm: true,
			o: fakehost.Options{KVM: true, SEV: true, AMD: "N", QEMU: "7.2.22", Containerd: ctd15},
			want: map[string]string{"snp": "no kvm_amd sev_snp=N", "virtiofsd": "no not in",
				"containerd": "no /usr/bin/containerd 1.5.9 (installed): Veil needs containerd 1.6 or later",
				"qemu":       "sev-snp-guest no, tdx-guest no"},
		},
		{
			name: "kvm_amd without the parameter, kvm_intel tdx=N",
			o:    fakehost.Options{AMD: "none", TDX: "N"},
			want: map[string]string{"kvm": "no /dev/kvm missing", "snp": "no /dev/sev missing; kvm_amd has no sev_snp parameter",
				"tdx": "no kvm_intel tdx=N", "qemu": "no no qemu-system-x86_64", "containerd": "no no containerd"},
		},
		{
			name: "kvm present but unusable",
			o: fakehost.Options{KVM: true, SEV: true, AMD: "Y", TDX: "Y", QEMU: "7.2.22", Virtiofsd: true, Containerd: ctd2,
				KVMBroken: "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: kvm.c:3183: Assertion failed."},
			want: map[string]string{
				"kvm": "but unusable: QEMU cannot run a guest under KVM here (signal: aborted: " +
					"qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69 qemu-system-x86_64: kvm.c:3183: Assertion failed.); " +
					"VMs run under TCG emulation",
				"snp": "no KVM unusable", "tdx": "no KVM unusable", "qemu": "yes /usr/bin/qemu-system-x86_64 7.2.22"},
		},
		{
			name: "kvm without qemu", kvm: true,
			o:    fakehost.Options{KVM: true},
			want: map[string]string{"kvm": "(no QEMU to try it with)"},
		},
		{
			name: "no kvm but sev_snp=Y",
			o:    fakehost.Options{SEV: true, AMD: "Y", TDX: "1"},
			want: map[string]string{"snp": "no no /dev/kvm", "tdx": "no no /dev/kvm", "kvm": "no"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := fakehost.New(t, tc.o)
			r := hostcheck.Probe(context.Background(), h)
			if r.KVM != tc.kvm || r.SNP != tc.snp || r.TDX != tc.tdx || r.QEMUSNP != tc.qsnp || r.QEMUTDX != tc.qtdx {
				t.Errorf("kvm/snp/tdx/qemu-snp/qemu-tdx = %v %v %v %v %v, want %v %v %v %v %v", r.KVM, r.SNP, r.TDX,
					r.QEMUSNP, r.QEMUTDX, tc.kvm, tc.snp, tc.tdx, tc.qsnp, tc.qtdx)
			}
			got := lines(r)
			for name, want := range tc.want {
				if !strings.HasPrefix(got[name], want) && !strings.Contains(got[name], want) {
					t.Errorf("line %s = %q, want %q in it", name, got[name], want)
				}
			}
			if len(r.Lines) != 6 {
				t.Errorf("%d lines, want one per check (6): %v", len(r.Lines), r.Lines)
			}
		})
	}
}

// A QEMU whose -object help fails is judged by its version.
func TestQEMUByVersion(t *testing.T) {
	h, _ := fakehost.New(t, fakehost.Options{KVM: true, QEMU: "9.2.0"})
	inner := h.Exec
	h.Exec = func(cmd *execCmd) ([]byte, error) {
		if len(cmd.Args) > 1 && cmd.Args[1] == "-object" {
			return nil, errFake
		}
		return inner(cmd)
	}
	r := hostcheck.Probe(context.Background(), h)
	if !r.QEMUSNP || r.QEMUTDX || r.QEMUVersion != (hostcheck.Version{Major: 9, Minor: 2}) {
		t.Errorf("QEMU 9.2 by version: snp %v tdx %v version %v", r.QEMUSNP, r.QEMUTDX, r.QEMUVersion)
	}
	if l := lines(r)["qemu"]; !strings.Contains(l, "by version") {
		t.Errorf("qemu line %q does not say it judged by version", l)
	}
}

// The KVM probe runs the host's QEMU under KVM with no disk and no kernel, so that the firmware
// reboots at once and QEMU exits; a working KVM says so.
func TestKVMProbe(t *testing.T) {
	h, calls := fakehost.New(t, fakehost.Options{KVM: true, QEMU: "7.2.22"})
	r := hostcheck.Probe(context.Background(), h)
	if !r.KVM || !strings.HasSuffix(lines(r)["kvm"], "; QEMU ran a guest's firmware under KVM") {
		t.Errorf("kvm %v, line %q", r.KVM, lines(r)["kvm"])
	}
	want := "/usr/bin/qemu-system-x86_64 " + strings.Join(hostcheck.KVMProbeArgs, " ")
	var probes []string
	for _, args := range calls.Args {
		if a := strings.Join(args, " "); strings.Contains(a, "-accel kvm") {
			probes = append(probes, a)
		}
	}
	if len(probes) != 1 || probes[0] != want {
		t.Errorf("KVM probes %q, want one: %q", probes, want)
	}
	for _, arg := range []string{"-no-reboot", "strict=on,reboot-timeout=0", "-cpu host", "-nodefaults"} {
		if !strings.Contains(want, arg) {
			t.Errorf("the probe lacks %s", arg)
		}
	}
}

func TestLineFormat(t *testing.T) {
	l := hostcheck.Line{Name: "kvm", State: "yes", Detail: "/dev/kvm present"}
	if got := l.String(); got != "kvm         yes  /dev/kvm present" {
		t.Errorf("line = %q", got)
	}
}

type execCmd = exec.Cmd

var errFake = errors.New("fake: no such option")

func TestRunningContainerd(t *testing.T) {
	for argv, want := range map[string]string{
		"containerd --config /run/k8s/config.toml --log-level info": "/run/k8s/config.toml",
		"/usr/bin/containerd -c /etc/c.toml":                        "/etc/c.toml",
		"containerd --config=/etc/d.toml":                           "/etc/d.toml",
		"containerd --config relative.toml":                         "",
		"/usr/bin/containerd":                                       "",
	} {
		h, _ := fakehost.New(t, fakehost.Options{Containerd: ctd2, ContainerdArgv: strings.Fields(argv)})
		r := hostcheck.Probe(context.Background(), h)
		if r.ContainerdConfig != want || r.Containerd != "/usr/bin/containerd" {
			t.Errorf("%q: config %q (binary %s), want %q", argv, r.ContainerdConfig, r.Containerd, want)
		}
		if l := lines(r)["containerd"]; !strings.Contains(l, "(running") {
			t.Errorf("%q: line %q", argv, l)
		}
	}
}
