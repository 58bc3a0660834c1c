package guestimage

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/guest-image/cpio"
	"github.com/veil-runtime/veil/guest-image/kmod"
)

// Paths inside the guest.
const (
	// ImageInfoPath holds ImageInfo as JSON.
	ImageInfoPath = "/etc/veil/image.json"
)

// gzipLevel is fixed: the initrd's bytes must not depend on a default.
const gzipLevel = gzip.BestCompression

// ImageInfo is /etc/veil/image.json: what the guest can learn about the
// image it booted.
type ImageInfo struct {
	KernelRelease string `json:"kernelRelease"`
	ImageVersion  string `json:"imageVersion"`
	// InputDigest is the build's input digest (see Inputs.Digest).
	InputDigest string `json:"inputDigest"`
}

// initrdSpec is what goes into an initrd.
type initrdSpec struct {
	init    []byte
	agent   []byte // installed at api.AgentPath when set
	release string
	modules []kmod.Module
	info    ImageInfo
	// simAuthority is installed at sim.GuestAuthorityPath when set.
	simAuthority []byte
	// mkfs is installed at api.MkfsPath when set.
	mkfs []byte
}

// emptyDirs are created in every initrd, with their permissions.
var emptyDirs = []struct {
	name string
	perm fs.FileMode
}{
	{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"run", 0o755},
	{"tmp", 0o777 | fs.ModeSticky}, {"etc", 0o755},
}

// buildInitrd returns the gzip-compressed newc archive and the guest paths
// of its modules in load order.
func buildInitrd(spec initrdSpec) (gz []byte, modPaths []string, stats string, err error) {
	a := cpio.New()
	add := func(e error) {
		err = errors.Join(err, e)
	}
	for _, d := range emptyDirs {
		add(a.AddDir(d.name, d.perm))
	}
	add(a.AddCharDevice("dev/console", 0o600, 5, 1))
	add(a.AddCharDevice("dev/null", 0o666, 1, 3))
	add(a.AddFile("init", 0o755, spec.init))
	if spec.agent != nil {
		add(a.AddFile(api.AgentPath, 0o755, spec.agent))
	}
	for _, m := range spec.modules {
		p := path.Join("/lib/modules", spec.release, m.Path)
		add(a.AddFile(p, 0o644, m.Data))
		modPaths = append(modPaths, p)
	}
	add(a.AddFile(api.ModulesListPath, 0o644, []byte(joinLines(modPaths))))
	if spec.simAuthority != nil {
		add(a.AddFile(sim.GuestAuthorityPath, 0o600, spec.simAuthority))
	}
	if spec.mkfs != nil {
		add(a.AddFile(api.MkfsPath, 0o755, spec.mkfs))
	}
	info, jerr := json.MarshalIndent(spec.info, "", "  ")
	add(jerr)
	add(a.AddFile(ImageInfoPath, 0o644, append(info, '\n')))
	if err != nil {
		return nil, nil, "", fmt.Errorf("assembling initrd: %w", err)
	}
	var raw, out bytes.Buffer
	if _, err := a.WriteTo(&raw); err != nil {
		return nil, nil, "", fmt.Errorf("writing initrd archive: %w", err)
	}
	if err := gzipTo(&out, raw.Bytes()); err != nil {
		return nil, nil, "", err
	}
	stats = fmt.Sprintf("%d entries, %s cpio, %s gzip", a.Len(), mib(raw.Len()), mib(out.Len()))
	return out.Bytes(), modPaths, stats, nil
}

// gzipTo compresses data at gzipLevel with an empty name and a zero mtime in
// the header, so the output depends on data alone.
func gzipTo(out *bytes.Buffer, data []byte) error {
	zw, err := gzip.NewWriterLevel(out, gzipLevel)
	if err != nil {
		return fmt.Errorf("compressing initrd: %w", err)
	}
	if _, err := zw.Write(data); err != nil {
		return fmt.Errorf("compressing initrd: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing initrd: %w", err)
	}
	return nil
}

// joinLines returns the lines, each ending in a newline.
func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// readInit reads the binary that becomes /init and checks that it can run
// there: a statically linked x86-64 ELF executable (the initrd has no
// dynamic loader or libraries).
func readInit(file string) ([]byte, error) {
	if file == "" {
		return nil, errors.New("no init binary: set the agent (--agent) or the init (--init)")
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init binary %s not found (build the agent, or pass --agent or --init): %w", file, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading init binary: %w", err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("init binary %s is not an ELF executable: %w", file, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) {
		return nil, fmt.Errorf("init binary %s is a %s %s, want an x86-64 executable", file, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("init binary %s is dynamically linked; build it static (CGO_ENABLED=0, or -ldflags '-extldflags \"-static\"')", file)
		}
	}
	return data, nil
}

// mib formats a byte count in MiB.
func mib(n int) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
