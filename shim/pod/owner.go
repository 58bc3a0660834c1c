package pod

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const ownerFile = "owner"

// writeOwner records the calling process (pid and start time) as the owner of dir.
func writeOwner(dir string) error {
	start, _, err := procStat(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %d\n", os.Getpid(), start)), 0o600)
}

// OwnerAlive reports whether the shim that created the pod directory of vmID still runs. A
// directory without an owner record counts as dead.
func OwnerAlive(vmID string) bool {
	b, err := os.ReadFile(filepath.Join(DirOf(vmID), ownerFile))
	if err != nil {
		return false
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
		return false
	}
	now, zombie, err := procStat(pid)
	return err == nil && now == start && !zombie
}

// procStat reads a process's start time (field 22 of /proc/<pid>/stat: it tells a process
// from a later one that got the same pid) and whether it is a zombie (dead, not yet reaped).
func procStat(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	fields := strings.Fields(s[i+1:])
	if i < 0 || len(fields) < 20 {
		return 0, false, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	return start, fields[0] == "Z" || fields[0] == "X", err
}
