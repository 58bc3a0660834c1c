package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/launch"
)

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
		Tee:              launch.DetectTEE(ctx),
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
