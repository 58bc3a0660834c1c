package guestimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/veil-runtime/veil/guest-image/debian"
	"github.com/veil-runtime/veil/guest-image/gobuild"
	"github.com/veil-runtime/veil/guest-image/kernel"
	"github.com/veil-runtime/veil/guest-image/kmod"
	"github.com/veil-runtime/veil/guest-image/manifest"
)

// Build fetches the kernel, builds the initrd and writes OutDir/vmlinuz,
// OutDir/initrd.img and OutDir/manifest.json. When OutDir already holds a
// manifest with the same input digest and files that match it, Build does
// no work and returns that manifest (unless Options.Force is set).
func Build(ctx context.Context, opts Options) (*Manifest, error) {
	o := opts.withDefaults()
	if o.OutDir == "" {
		return nil, errors.New("guest image: no output directory given")
	}
	p := &progress{w: o.Progress}
	start := time.Now()
	initData, err := readInit(o.Init)
	if err != nil {
		return nil, err
	}
	var agentData []byte
	if o.Agent != "" && o.Agent != o.Init {
		if agentData, err = readInit(o.Agent); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	simData, simRef, err := readSimAuthority(o.SimAuthority)
	if err != nil {
		return nil, err
	}
	agentPath := ""
	if agentData != nil {
		agentPath = o.Agent
	}
	src, err := readSource(o.Init, initData, agentPath, agentData)
	if err != nil {
		return nil, err
	}
	if o.Lock == nil {
		if o.Lock, err = DefaultLock(); err != nil {
			return nil, err
		}
	}
	if src != nil && src.GoVersion != o.Lock.Go {
		p.step("warning", "the binaries were built with %s, the lock file %s says %s: the image will not be reproducible from it",
			src.GoVersion, o.LockName, o.Lock.Go)
	}
	lock, err := lockCache(o.CacheDir)
	if err != nil {
		return nil, err
	}
	unlock := sync.OnceFunc(lock)
	defer unlock()
	var (
		pkg *debian.Package
		deb string
		kin kernel.Inputs
	)
	switch o.Kernel {
	case kernel.Debian:
		pkg, deb, err = fetchKernel(ctx, o, p)
	case kernel.Veil:
		pkg, deb, kin, err = fetchKernelSource(ctx, o, p)
	default:
		_, err = kernel.ParseKind(string(o.Kernel))
	}
	if err != nil {
		return nil, err
	}
	mkfsPkg, mkfsData, err := fetchMkfs(ctx, o, p)
	if err != nil {
		return nil, err
	}
	in := Inputs{FormatVersion: FormatVersion, LockSHA256: o.Lock.Digest(), InitSHA256: sha256Hex(initData), KernelDebSHA256: pkg.SHA256,
		MkfsDebSHA256: mkfsPkg.SHA256, Modules: normalizeAll(o.Modules), Cmdline: o.Cmdline, ImageVersion: o.ImageVersion,
		Kernel: string(o.Kernel)}
	if o.Kernel == kernel.Veil {
		in.KernelBuild = kin.Key()
	}
	if agentData != nil {
		in.AgentSHA256 = sha256Hex(agentData)
	}
	if src != nil {
		in.Source = src.Commit
		if src.Modified {
			in.Source += gobuild.DirtySuffix
		}
	}
	if simData != nil {
		in.SimAuthoritySHA256 = sha256Hex(simData)
	}
	digest := in.Digest()
	if m, ok := upToDate(o.OutDir, digest); ok && !o.Force {
		p.step("cached", "%s already holds this build (input digest %s); nothing to do", o.OutDir, digest)
		return m, nil
	}
	var (
		k    *kernelTree
		mods []kmod.Module
		kcfg *manifest.KernelConfig
	)
	if o.Kernel == kernel.Veil {
		// The kernel build can take tens of minutes: it has a lock of its own, and other
		// builds sharing the cache directory need not wait for it (what it reads from the
		// cache is the locked source package, which nothing changes).
		unlock()
		if k, kcfg, err = buildVeilKernel(ctx, o, deb, p); err != nil {
			return nil, err
		}
	} else {
		if k, err = unpackKernel(ctx, o, deb, pkg, p); err != nil {
			return nil, err
		}
		if mods, err = resolveModules(k, o.Modules, p); err != nil {
			return nil, err
		}
	}
	m := &Manifest{FormatVersion: FormatVersion, InputDigest: digest, ImageVersion: o.ImageVersion,
		KernelRelease: k.release, Cmdline: o.Cmdline, InitSHA256: in.InitSHA256, AgentSHA256: in.AgentSHA256,
		KernelPackage: PackageRef{Name: pkg.Name, Version: pkg.Version, SHA256: pkg.SHA256, Filename: pkg.Filename},
		KernelKind:    string(o.Kernel), KernelConfig: kcfg,
		SimAuthority: simRef, Source: src, LockSHA256: in.LockSHA256, ModuleNames: in.Modules,
		MkfsPackage: &PackageRef{Name: mkfsPkg.Name, Version: mkfsPkg.Version, SHA256: mkfsPkg.SHA256, Filename: mkfsPkg.Filename}}
	spec := initrdSpec{init: initData, agent: agentData, modules: mods, simAuthority: simData, mkfs: mkfsData}
	if err := writeImage(k, spec, m, o.OutDir, p); err != nil {
		return nil, err
	}
	p.step("done", "%s in %.1fs (input digest %s)", o.OutDir, time.Since(start).Seconds(), digest)
	return m, nil
}

// resolveModules finds the modules and their dependencies in load order.
func resolveModules(k *kernelTree, names []string, p *progress) ([]kmod.Module, error) {
	done := p.timer("modules")
	tree, err := kmod.Open(k.modulesDir())
	if err != nil {
		return nil, err
	}
	res, err := tree.Resolve(names)
	if err != nil {
		return nil, fmt.Errorf("resolving kernel modules for %s: %w", k.release, err)
	}
	msg := strings.Join(kmod.Names(res.Modules), " ")
	if len(res.Builtin) > 0 {
		msg += "; built in, skipped: " + strings.Join(res.Builtin, " ")
	}
	done("%s", msg)
	return res.Modules, nil
}

// writeImage packs the initrd and writes the kernel, the initrd and, last,
// the manifest into dir, filling in m's file descriptions.
func writeImage(k *kernelTree, spec initrdSpec, m *Manifest, dir string, p *progress) error {
	done := p.timer("pack")
	spec.release = k.release
	spec.info = ImageInfo{KernelRelease: k.release, ImageVersion: m.ImageVersion, InputDigest: m.InputDigest}
	initrd, modPaths, stats, err := buildInitrd(spec)
	if err != nil {
		return err
	}
	done("initrd: %s", stats)
	kernel, err := os.ReadFile(k.vmlinuz())
	if err != nil {
		return fmt.Errorf("reading kernel image: %w", err)
	}
	m.Modules = modPaths
	if m.Modules == nil {
		m.Modules = []string{} // the veil kernel's images load none: an empty list, not null
	}
	m.Kernel = manifest.DescribeBytes(KernelFile, kernel)
	m.Initrd = manifest.DescribeBytes(InitrdFile, initrd)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	// Remove the old manifest first: a crash half-way then leaves no
	// manifest that claims files it does not describe.
	if err := os.Remove(filepath.Join(dir, ManifestFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing old manifest: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{KernelFile, kernel}, {InitrdFile, initrd}, {ManifestFile, m.Encode()}} {
		if err := writeFileAtomic(dir, f.name, f.data); err != nil {
			return err
		}
	}
	p.step("wrote", "%s (%s), %s (%s), %s", filepath.Join(dir, KernelFile), mib(len(kernel)),
		filepath.Join(dir, InitrdFile), mib(len(initrd)), filepath.Join(dir, ManifestFile))
	return nil
}

// writeFileAtomic writes dir/name through a temporary file and a rename.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// normalizeAll returns the module names in canonical form ("-" as "_").
func normalizeAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = kmod.Normalize(n)
	}
	return out
}
