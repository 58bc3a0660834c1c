package guestimage

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/veil-runtime/veil/guest-image/debian"
	"github.com/veil-runtime/veil/guest-image/kernel"
	"github.com/veil-runtime/veil/guest-image/manifest"
)

// veilKernelCache is the veil kernel's cache below Options.CacheDir: one directory per build
// key (kernel.Build).
const veilKernelCache = "veil-kernel"

// fetchKernelSource makes sure the locked kernel source package is in the cache and returns
// it with the veil kernel's build inputs.
func fetchKernelSource(ctx context.Context, o Options, p *progress) (*debian.Package, string, kernel.Inputs, error) {
	if len(o.Modules) > 0 {
		return nil, "", kernel.Inputs{}, fmt.Errorf("the veil kernel has no modules (everything it needs is built in: %s), but modules %v were asked for",
			kernel.FragmentFile, o.Modules)
	}
	s := o.Lock.KernelSource
	deb, err := fetchLocked(ctx, s, o.Mirror, o.CacheDir, o.LockName, p)
	if err != nil {
		return nil, "", kernel.Inputs{}, err
	}
	in, err := kernel.NewInputs(ctx, o.kernelBuild(deb))
	if err != nil {
		return nil, "", kernel.Inputs{}, err
	}
	p.step("kernel", "veil kernel from %s (%s, sha256 %s), fragment sha256 %s, %s, build key %s",
		s, mib(int(s.Size)), s.SHA256, in.FragmentSHA256, in.Compiler, in.Key())
	return s.Package(), deb, in, nil
}

// kernelBuild says how to build the veil kernel from the source package deb.
func (o Options) kernelBuild(deb string) kernel.BuildOptions {
	name := kernel.FragmentFile
	if o.KernelFile != "" {
		name = o.KernelFile
	}
	return kernel.BuildOptions{SourceDeb: deb, SourceSHA256: o.Lock.KernelSource.SHA256, Fragment: o.KernelFragment,
		FragmentName: name, CacheDir: filepath.Join(o.CacheDir, veilKernelCache)}
}

// buildVeilKernel returns the cached veil kernel or builds it (tens of minutes on two cores).
func buildVeilKernel(ctx context.Context, o Options, deb string, p *progress) (*kernelTree, *manifest.KernelConfig, error) {
	bo := o.kernelBuild(deb)
	bo.Progress = p.indented()
	unlock, err := lockCache(bo.CacheDir)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	done := p.timer("compile")
	r, cached, err := kernel.Build(ctx, bo)
	if err != nil {
		return nil, nil, fmt.Errorf("building the veil kernel: %w", err)
	}
	if cached {
		p.step("compile", "cached: %s (%s %s, built in %.0fs with -j%d)", r.Image(), r.Release, mib(int(r.ImageSize)), r.BuildSeconds, r.Jobs)
	} else {
		done("%s: %s, %s", r.Image(), r.Release, mib(int(r.ImageSize)))
	}
	cfg := &manifest.KernelConfig{FragmentSHA256: r.Inputs.FragmentSHA256, ConfigSHA256: r.ConfigSHA256, SourceSHA256: r.Inputs.SourceSHA256,
		Compiler: r.Inputs.Compiler, Linker: r.Inputs.Linker, BuildKey: r.Key}
	return &kernelTree{release: r.Release, image: r.Image()}, cfg, nil
}
