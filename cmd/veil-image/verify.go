package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	guestimage "github.com/veil-runtime/veil/guest-image"
	"github.com/veil-runtime/veil/guest-image/gobuild"
	"github.com/veil-runtime/veil/guest-image/kernel"
	"github.com/veil-runtime/veil/guest-image/manifest"
)

// verify rebuilds an image from the commit, lock and options its manifest records, in a fresh
// clone of the repository, and compares every file byte for byte.
func verify(args []string) error {
	fs := flag.NewFlagSet("veil-image verify", flag.ContinueOnError)
	src := fs.String("src", ".", "a git repository holding the image's commit")
	cache := fs.String("cache", guestimage.DefaultCacheDir, "cache for the Debian packages (a cached .deb is used when its SHA-256 is the lock's)")
	simAuth := fs.String("sim-authority", "", "the sim authority file the image was built with (needed when its manifest has one)")
	keep := fs.Bool("keep", false, "keep the clone and the rebuilt image (their directory is printed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: veil-image verify [--src REPO] [--cache DIR] [--sim-authority FILE] IMAGEDIR")
	}
	dir := fs.Arg(0)
	m, err := manifest.Read(dir)
	if err != nil {
		return err
	}
	if err := m.Verify(dir); err != nil {
		return fmt.Errorf("%s does not match its own manifest: %w", dir, err)
	}
	switch {
	case m.Source == nil:
		return fmt.Errorf("the manifest of %s names no source commit (its binaries carry no version stamp of veil-image binaries): it cannot be rebuilt; build images with make image", dir)
	case m.Source.Modified:
		return fmt.Errorf("the image in %s was built from a modified tree (commit %s with changes): it cannot be rebuilt; build from a clean checkout", dir, m.Source.Commit)
	case m.SimAuthority != nil && *simAuth == "":
		return fmt.Errorf("the image in %s carries a sim authority: give the file it was built with (--sim-authority)", dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	tmp, err := os.MkdirTemp("", "veil-image-verify-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Printf("verify: keeping %s\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	clone := filepath.Join(tmp, "src")
	for _, c := range [][]string{{"clone", "--quiet", "--no-checkout", "--shared", *src, clone},
		{"-C", clone, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", m.Source.Commit}} {
		if out, err := exec.CommandContext(ctx, "git", c...).CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w: %s (is commit %s in %s?)", strings.Join(c, " "), err, bytes.TrimSpace(out), m.Source.Commit, *src)
		}
	}
	s, err := gobuild.ReadSource(ctx, clone)
	if err != nil {
		return err
	}
	lockFile := filepath.Join(clone, guestimage.LockFile)
	l, err := guestimage.ReadLock(lockFile)
	if err != nil {
		return err
	}
	if m.LockSHA256 != "" && l.Digest() != m.LockSHA256 {
		return fmt.Errorf("the lock file of commit %s has digest %s, the manifest %s", m.Source.Commit, l.Digest(), m.LockSHA256)
	}
	if l.Go != m.Source.GoVersion {
		return fmt.Errorf("the manifest says the binaries were built with %s, but commit %s locks %s: the image was not built by make image", m.Source.GoVersion, m.Source.Commit, l.Go)
	}
	fmt.Printf("verify: rebuilding %s: commit %s, %s, kernel %s, mkfs %s, in %s\n", dir, s.Commit, l.Go, l.Kernel, l.Mkfs, clone)
	bin := filepath.Join(tmp, "bin")
	if err := gobuild.Build(ctx, s, bin, l.Go, os.Stderr); err != nil {
		return err
	}
	out := filepath.Join(tmp, "image")
	o := guestimage.Options{OutDir: out, Init: filepath.Join(bin, "veil-init"), Agent: filepath.Join(bin, "veil-agent"),
		CacheDir: *cache, Lock: l, LockName: lockFile, Modules: m.ModuleNames, Cmdline: m.Cmdline,
		ImageVersion: m.ImageVersion, SimAuthority: *simAuth, Force: true}
	if m.AgentSHA256 == "" {
		o.Agent = o.Init
	}
	if o.Kernel, err = kernel.ParseKind(m.KernelKind); err != nil {
		return fmt.Errorf("manifest %s: %w", dir, err)
	}
	if o.Kernel == kernel.Veil {
		// The commit's own fragment, not the one this veil-image was built with.
		o.KernelFile = filepath.Join(clone, kernel.FragmentFile)
		if o.KernelFragment, err = os.ReadFile(o.KernelFile); err != nil {
			return fmt.Errorf("the image boots the veil kernel, but commit %s has no fragment: %w", m.Source.Commit, err)
		}
	}
	if _, err := guestimage.Build(ctx, o); err != nil {
		return fmt.Errorf("rebuilding: %w", err)
	}
	var diffs []string
	for _, f := range []string{manifest.ManifestFile, manifest.KernelFile, manifest.InitrdFile} {
		if d := compareFiles(filepath.Join(dir, f), filepath.Join(out, f)); d != "" {
			diffs = append(diffs, d)
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the rebuild of %s from commit %s differs:\n  %s\n(the rebuilt image is in %s with --keep; compare the manifests' source sections)",
			dir, m.Source.Commit, strings.Join(diffs, "\n  "), out)
	}
	fmt.Printf("verify: %s is reproducible: %s, %s and %s rebuilt from commit %s are identical, byte for byte (%.0f s)\n",
		dir, manifest.ManifestFile, manifest.KernelFile, manifest.InitrdFile, m.Source.Commit, time.Since(start).Seconds())
	return nil
}

// compareFiles returns "" when a and b have the same bytes, else what differs.
func compareFiles(a, b string) string {
	da, err := os.ReadFile(a)
	if err != nil {
		return err.Error()
	}
	db, err := os.ReadFile(b)
	if err != nil {
		return err.Error()
	}
	if bytes.Equal(da, db) {
		return ""
	}
	ha, hb := sha256.Sum256(da), sha256.Sum256(db)
	return fmt.Sprintf("%s: %d bytes, sha256 %s; rebuilt: %d bytes, sha256 %s", filepath.Base(a), len(da), hex.EncodeToString(ha[:]),
		len(db), hex.EncodeToString(hb[:]))
}
