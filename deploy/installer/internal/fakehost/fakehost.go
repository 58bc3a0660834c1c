// Package fakehost builds a host root in a temporary directory for the installer's tests:
// /dev and /sys/module entries of KVM, SEV-SNP and TDX, qemu, virtiofsd and containerd
// programs whose output a fake Exec returns, /proc entries for pid 1 and running shims.
package fakehost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/deploy/installer/host"
)

// Options describe the fake node.
type Options struct {
	KVM bool   // /dev/kvm
	SEV bool   // /dev/sev
	AMD string // kvm_amd's sev_snp parameter: "" for no kvm_amd module, "none" for a module without it
	TDX string // kvm_intel's tdx parameter, the same way
	// QEMU is the version qemu-system-x86_64 --version prints ("" for no QEMU); Objects
	// the types -object help lists besides memory-backend-memfd.
	QEMU    string
	Objects []string
	// Virtiofsd puts /usr/lib/qemu/virtiofsd there.
	Virtiofsd bool
	// Containerd is what containerd --version prints ("" for no containerd).
	Containerd string
	// ContainerdArgv, when set, is the command line of a running containerd (pid 500,
	// executable /usr/bin/containerd).
	ContainerdArgv []string
	// Init is pid 1's name (default systemd).
	Init string
	// Shims is how many containerd-shim-veil-v2 processes run.
	Shims int
	// KVMBroken, when set, is the error of QEMU under KVM (the KVM probe fails with it).
	KVMBroken string
}

// Calls records the host programs the fake Exec was asked to run.
type Calls struct{ Args [][]string }

// New builds the host root and returns the host with a fake Exec.
func New(t testing.TB, o Options) (host.Host, *Calls) {
	t.Helper()
	// A short path: unix sockets under it must fit in 108 bytes.
	root, err := os.MkdirTemp("", "vdhost")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	w := func(p, content string, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	if o.KVM {
		w("/dev/kvm", "", 0o644)
	}
	if o.SEV {
		w("/dev/sev", "", 0o644)
	}
	module := func(name, param, v string) {
		switch v {
		case "":
		case "none":
			w("/sys/module/"+name+"/parameters/nested", "0\n", 0o644)
		default:
			w("/sys/module/"+name+"/parameters/"+param, v+"\n", 0o644)
		}
	}
	module("kvm_amd", "sev_snp", o.AMD)
	module("kvm_intel", "tdx", o.TDX)
	if o.QEMU != "" {
		w("/usr/bin/qemu-system-x86_64", "#!/bin/false\n", 0o755)
	}
	if o.Virtiofsd {
		w("/usr/lib/qemu/virtiofsd", "#!/bin/false\n", 0o755)
	}
	if o.Containerd != "" {
		w("/usr/bin/containerd", "#!/bin/false\n", 0o755)
	}
	if o.Init == "" {
		o.Init = "systemd"
	}
	w("/proc/1/comm", o.Init+"\n", 0o644)
	w("/proc/1/cmdline", "/sbin/init\x00", 0o644)
	for i := 0; i < o.Shims; i++ {
		pid := strconv.Itoa(1000 + i)
		w("/proc/"+pid+"/cmdline", "/opt/veil/bin/containerd-shim-veil-v2\x00-namespace\x00k8s.io\x00-id\x00x\x00", 0o644)
	}
	if len(o.ContainerdArgv) > 0 {
		w("/proc/500/cmdline", strings.Join(o.ContainerdArgv, "\x00")+"\x00", 0o644)
		if err := os.Symlink("/usr/bin/containerd", filepath.Join(root, "proc/500/exe")); err != nil {
			t.Fatal(err)
		}
	}
	calls := &Calls{}
	h := host.New(root)
	h.Exec = func(cmd *exec.Cmd) ([]byte, error) {
		calls.Args = append(calls.Args, cmd.Args)
		switch {
		case strings.HasSuffix(cmd.Path, "qemu-system-x86_64") && o.KVMBroken != "" && strings.Contains(strings.Join(cmd.Args, " "), "-accel kvm"):
			return nil, fmt.Errorf("%s: signal: aborted: %s", strings.Join(cmd.Args, " "), o.KVMBroken)
		case strings.HasSuffix(cmd.Path, "qemu-system-x86_64") && len(cmd.Args) > 1 && cmd.Args[1] == "--version":
			return []byte("QEMU emulator version " + o.QEMU + " (Debian)\nCopyright (c) 2003-2022\n"), nil
		case strings.HasSuffix(cmd.Path, "qemu-system-x86_64"):
			return []byte("List of user creatable objects:\n  memory-backend-memfd\n  " + strings.Join(o.Objects, "\n  ") + "\n"), nil
		case strings.HasSuffix(cmd.Path, "containerd"):
			return []byte(o.Containerd + "\n"), nil
		}
		return nil, fmt.Errorf("fakehost: no program %v", cmd.Args)
	}
	return h, calls
}

// WriteFile writes a file under the host root.
func WriteFile(t testing.TB, h host.Host, p, content string) {
	t.Helper()
	full := h.Path(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ReadFile reads a file under the host root ("" when missing).
func ReadFile(t testing.TB, h host.Host, p string) string {
	t.Helper()
	b, err := os.ReadFile(h.Path(p))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}
