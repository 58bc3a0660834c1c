package task

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The shim's binary is ~20 MB, and the kernel maps page-cache pages around every page the
// process touches (fault-around, 64 KiB), so after start-up (plugin and protobuf
// registration, the VM's boot) nearly all of its text and read-only data counts in the
// shim's RSS although the steady state (ttrpc, the agent's long polls) uses a small part of
// it. trimmer drops those mappings once the requests that start things have settled: for a
// read-only private file mapping without anonymous (copy-on-write) pages, MADV_DONTNEED only
// removes page-table entries; the pages stay in the page cache (shared by every shim) and
// fault back in, unchanged, when used. The heap goes back to the OS at the same time.
type trimmer struct {
	mu    sync.Mutex
	timer *time.Timer
	delay time.Duration
}

// trimDelay is how long after the last start-like request the shim trims; trimPeriod is how
// often it drops the binary's pages again (containerd's shim library runs a GC every 30 s,
// and the GC reads type data and the pc tables of much of the binary).
const (
	trimDelay  = time.Second
	trimPeriod = 30 * time.Second
	trimOffset = 5 * time.Second
)

// trimEnabled: on unless VEIL_SHIM_TRIM=0 in the shim's environment (containerd's). It was
// opt-in while the concurrency test lost a container's output with it on; that was the exit
// being reported before the output reached the FIFOs (fixed in events.go), not the trim.
var trimEnabled = os.Getenv("VEIL_SHIM_TRIM") != "0"

// periodic drops the binary's pages every trimPeriod until ctx ends, trimOffset after each of
// the shim library's GCs (its ticker starts just before the task service's).
func (t *trimmer) periodic(ctx context.Context) {
	if !trimEnabled {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(trimOffset):
	}
	tick := time.NewTicker(trimPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = dropBinaryPages()
		}
	}
}

// schedule (re)arms the trim.
func (t *trimmer) schedule() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer == nil {
		t.timer = time.AfterFunc(t.delay, trimNow)
		return
	}
	t.timer.Reset(t.delay)
}

// trimNow returns the free heap to the OS and drops the binary's read-only mappings.
func trimNow() {
	if !trimEnabled {
		return
	}
	debug.FreeOSMemory()
	_ = dropBinaryPages()
}

// dropBinaryPages applies MADV_DONTNEED to the executable's read-only mappings that hold no
// anonymous pages.
func dropBinaryPages() error {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("read /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return fmt.Errorf("open smaps: %w", err)
	}
	defer f.Close()
	var regions [][2]uintptr
	var cur *[2]uintptr // the current mapping, while it qualifies
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			cur = nil
			perms := fields[1]
			path := strings.TrimSpace(strings.Join(fields[5:], " "))
			if path != exe || perms[1] == 'w' || perms[3] != 'p' {
				continue
			}
			lo, hi, ok := strings.Cut(fields[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			regions = append(regions, [2]uintptr{uintptr(start), uintptr(end)})
			cur = &regions[len(regions)-1]
			continue
		}
		if cur != nil && len(fields) >= 2 && fields[0] == "Anonymous:" && fields[1] != "0" {
			cur[1] = cur[0] // copy-on-write pages: leave the mapping alone
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read smaps: %w", err)
	}
	for _, r := range regions {
		if r[1] <= r[0] {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("madvise %#x-%#x: %w", r[0], r[1], errno)
		}
	}
	return nil
}
