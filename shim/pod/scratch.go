package pod

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/veil-runtime/veil/shim/config"
	"github.com/veil-runtime/veil/shim/podcgroup"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// scratchRecord, in the pod directory, names the pod's scratch disk file, so that whoever
// cleans a pod up (its shim, or the next shim's delete after a crash) removes that file too.
const scratchRecord = "scratch-disk"

// scratchPath is the scratch disk file of VM vmID in dir.
func scratchPath(dir, vmID string) string { return filepath.Join(dir, vmID+".img") }

// createScratch makes the pod's sparse scratch disk file when the configuration asks for
// one, and records it in the pod directory first (a crash in between leaves a record, never
// an unrecorded file). It returns the file's path, or "" for none.
func (p *Pod) createScratch(h config.Hypervisor) (string, error) {
	if h.ScratchDiskMiB == 0 {
		return "", nil
	}
	path := scratchPath(h.ScratchDir, p.VMID)
	if err := os.WriteFile(filepath.Join(p.Dir, scratchRecord), []byte(path+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("record scratch disk: %w", err)
	}
	if err := sandbox.CreateScratchDisk(path, h.ScratchDiskMiB); err != nil {
		return "", err
	}
	return path, nil
}

// removeScratch removes the scratch disk file that podDir, the pod directory of vmID, records,
// if any. Only a file named like the pod's is removed: the record cannot point elsewhere.
func removeScratch(podDir, vmID string) error {
	b, err := os.ReadFile(filepath.Join(podDir, scratchRecord))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read scratch disk record: %w", err)
	}
	path := strings.TrimSpace(string(b))
	if !filepath.IsAbs(path) || filepath.Base(path) != vmID+".img" {
		return fmt.Errorf("scratch disk record of %s names %q, not a scratch disk of this pod", vmID, path)
	}
	return sandbox.RemoveScratchDisk(path)
}

// CleanupPod removes the pod's scratch disk file and the sandbox cgroup the shim made
// (podcgroup.Remove, once its processes are gone), then every mount and file of the pod
// directory of vmID (Cleanup).
func CleanupPod(vmID string) error {
	serr := removeScratch(DirOf(vmID), vmID)
	cerr := podcgroup.Remove(DirOf(vmID))
	return errors.Join(serr, cerr, Cleanup(DirOf(vmID)))
}
