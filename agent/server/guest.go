package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/initsys"
	"github.com/veil-runtime/veil/agent/launch"
	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/attestation/sim/psp"
)

// teePaths are where the guest kernel shows a TEE.
type teePaths struct {
	sevGuest  string // the SEV-SNP guest device
	tdxGuest  string // the TDX guest device
	tsmReport string // configfs-tsm's report directory
	cmdline   string // the kernel command line (veil.tee=sim selects the simulated TEE)
}

var defaultTEEPaths = teePaths{
	sevGuest:  "/dev/sev-guest",
	tdxGuest:  "/dev/tdx_guest",
	tsmReport: "/sys/kernel/config/tsm/report",
	cmdline:   "/proc/cmdline",
}

// GetGuestDetails describes the guest: kernel release, memory, online CPUs, the TEE it runs
// in, the agent's version, the loaded kernel modules and the boot time.
func (s *Server) GetGuestDetails(ctx context.Context, req *api.GetGuestDetailsRequest) (*api.GetGuestDetailsResponse, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return nil, fmt.Errorf("sysinfo: %w", err)
	}
	cpus, err := onlineCPUs("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	modules, err := loadedModules("/proc/modules")
	if err != nil {
		return nil, err
	}
	boot, err := bootTime()
	if err != nil {
		return nil, err
	}
	return &api.GetGuestDetailsResponse{
		KernelRelease:    unix.ByteSliceToString(uts.Release[:]),
		MemTotalBytes:    uint64(si.Totalram) * uint64(si.Unit),
		OnlineCpus:       cpus,
		Tee:              detectTEE(ctx, defaultTEEPaths),
		AgentVersion:     AgentVersion,
		LoadedModules:    modules,
		BootTimeUnixNano: uint64(boot.UnixNano()),
		AgentRssBytes:    residentBytes("/proc/self/status"),
		InitRssBytes:     residentBytes("/proc/1/status"),
	}, nil
}

// residentBytes reads VmRSS from a /proc/<pid>/status file; 0 when it cannot.
func residentBytes(statusFile string) uint64 {
	data, err := os.ReadFile(statusFile)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err == nil {
				return kib << 10
			}
		}
	}
	return 0
}

// DetectTEE returns the guest's TEE kind as GetGuestDetails reports it: "snp", "tdx", "sim"
// or "none".
func DetectTEE(ctx context.Context) string { return detectTEE(ctx, defaultTEEPaths) }

// detectTEE returns the hardware TEE when there is one, else "sim" when the kernel command
// line selects the simulated TEE (veil.tee=sim), else "none". Hardware wins: on a real TEE
// the host must not be able to swap the launch measurement for one it hands the guest.
func detectTEE(ctx context.Context, p teePaths) string {
	hw := detectHardwareTEE(ctx, p)
	if v, ok := initsys.ParseCmdline(readFile(p.cmdline))[psp.KernelParam]; ok {
		switch {
		case v != psp.KernelParamSim:
			log.G(ctx).Warnf("%s=%s is not a TEE the guest can select (only %s); ignored", psp.KernelParam, v, psp.KernelParamSim)
		case hw != "none":
			log.G(ctx).Warnf("%s=%s ignored: this guest runs in a real %s TEE", psp.KernelParam, v, hw)
		default:
			return launch.TEESim
		}
	}
	return hw
}

// readFile returns a file's contents, or "" when it cannot be read.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// detectHardwareTEE returns "snp" or "tdx" as attestation/attester.DetectKind sees the guest
// (the same rules the attester that produces evidence follows, so the launch check and the
// evidence never disagree on the TEE), else "none".
func detectHardwareTEE(ctx context.Context, p teePaths) string {
	kind, err := attester.DetectKind(teeEnv{p})
	if err != nil {
		if !errors.Is(err, attester.ErrNoTEE) {
			log.G(ctx).WithError(err).Warn("TEE detection")
		}
		return "none"
	}
	return kind
}

// teeEnv is attester.Env on teePaths, so tests can point detection at a temporary directory.
// Paths it does not map (an older kernel's TDX device name) are looked up as they are.
type teeEnv struct{ p teePaths }

func (e teeEnv) Exists(path string) bool {
	switch path {
	case attester.TSMReportDir:
		path = e.p.tsmReport
	case attester.SEVGuestPath:
		path = e.p.sevGuest
	case attester.TDXGuestPath:
		path = e.p.tdxGuest
	}
	_, err := os.Stat(path)
	return err == nil
}

func (e teeEnv) TSMProvider() (string, error) { return tsmProvider(e.p.tsmReport) }

// tsmProvider makes a report entry in configfs-tsm, reads which driver provides it and
// removes the entry again.
func tsmProvider(reportDir string) (string, error) {
	entry := filepath.Join(reportDir, fmt.Sprintf("veil-probe-%d", os.Getpid()))
	if err := os.Mkdir(entry, 0o700); err != nil {
		return "", fmt.Errorf("create configfs-tsm report entry: %w", err)
	}
	defer os.Remove(entry)
	b, err := os.ReadFile(filepath.Join(entry, "provider"))
	if err != nil {
		return "", fmt.Errorf("read configfs-tsm provider: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// onlineCPUs counts the CPUs in a sysfs CPU list such as "0-3,6".
func onlineCPUs(path string) (uint32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read online CPUs: %w", err)
	}
	n, err := countCPUList(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func countCPUList(list string) (uint32, error) {
	var n uint32
	for _, part := range strings.Split(list, ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("CPU list %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil || b < a {
				return 0, fmt.Errorf("CPU list %q: bad range %q", list, part)
			}
		}
		n += uint32(b - a + 1)
	}
	return n, nil
}

// loadedModules lists the module names of /proc/modules (none when the kernel has no module
// support and so no such file).
func loadedModules(path string) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read loaded modules: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, _, _ := strings.Cut(sc.Text(), " "); name != "" {
			out = append(out, name)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read loaded modules: %w", err)
	}
	return out, nil
}

// bootTime is the wall-clock time at which the kernel booted.
func bootTime() (time.Time, error) {
	var up unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &up); err != nil {
		return time.Time{}, fmt.Errorf("read boot clock: %w", err)
	}
	return time.Now().Add(-time.Duration(up.Nano())), nil
}
