package qemu

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
)

// version is a QEMU release. Everything that depends on it is decided in this file and in
// checkVersion (tee.go), so that moving from Debian's 7.2 to 10.x touches nothing else.
type version struct {
	Major, Minor, Micro int
	Text                string // the first line of --version, used in the KVM probe's cache key
}

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) }

func (v version) less(o version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Micro < o.Micro
}

var versionPattern = regexp.MustCompile(`(?m)^QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?.*$`)

// parseVersion reads "7.2" or "7.2.22", or the output of qemu --version.
func parseVersion(s string) (version, error) {
	m := versionPattern.FindStringSubmatch(s)
	if m == nil {
		m = regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?$`).FindStringSubmatch(s)
	}
	if m == nil {
		return version{}, fmt.Errorf("qemu: cannot read a version from %q", s)
	}
	v := version{Text: m[0]}
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Micro, _ = strconv.Atoi(m[3]) // "" when absent: 0
	return v, nil
}

var versions sync.Map // binary path -> version

// binaryVersion runs qemu --version once per binary path.
func binaryVersion(ctx context.Context, qemu string) (version, error) {
	if v, ok := versions.Load(qemu); ok {
		return v.(version), nil
	}
	out, err := exec.CommandContext(ctx, qemu, "--version").Output()
	if err != nil {
		return version{}, fmt.Errorf("qemu: %s --version: %w", qemu, err)
	}
	v, err := parseVersion(string(out))
	if err != nil {
		return version{}, err
	}
	versions.Store(qemu, v)
	return v, nil
}

// tcgCPU is the -cpu model for TCG guests. QEMU 7.2's TCG mis-emulates cmpxchg16b with a
// segment prefix, which the 6.12 kernel's SLUB allocator uses (`cmpxchg16b %gs:(...)`):
// 10-25% of boots oopsed in kmem_cache_alloc; with cx16 off, 60 of 60 booted. QEMU 10.0 boots
// the same kernel 40 of 40 with cx16 on; versions in between are untested, so they keep the
// workaround too. Without cx16 the kernel falls back to a locked slow path: correct, a little
// slower.
func tcgCPU(v version) string {
	if v.less(version{Major: 10}) {
		return "max,cx16=off"
	}
	return "max"
}
