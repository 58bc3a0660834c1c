// Package kmod finds kernel modules in an unpacked kernel tree
// (lib/modules/<release>), orders them so that every module comes after the
// modules it depends on, and returns them decompressed.
//
// It needs no modules.dep (Debian's kernel packages ship none; depmod makes
// it at install time): each module's dependencies are read from the
// "depends=" and "softdep=pre:" entries of its .modinfo ELF section. Modules
// compressed as .ko.xz or .ko.zst are decompressed with the xz or zstd tool,
// .ko.gz with Go's gzip reader.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotFound is returned when a module is neither a file in the tree nor
// built into the kernel.
var ErrNotFound = errors.New("kernel module not found")

// Module is one module ready to be copied into an initrd.
type Module struct {
	// Name is the module's name with dashes as underscores, e.g. "virtio_blk".
	Name string
	// Path is the decompressed module's path relative to the release
	// directory, e.g. "kernel/drivers/block/virtio_blk.ko".
	Path string
	// Data is the decompressed module (an ELF relocatable object).
	Data []byte
	// Depends lists the modules that must be loaded before this one.
	Depends []string
	// SoftPre lists the modules its "softdep=pre:" asks to load before it,
	// when the tree has them.
	SoftPre []string
}

// Tree is an index of the modules under one lib/modules/<release> directory.
type Tree struct {
	dir     string
	release string
	files   map[string]string // module name -> path relative to dir, as shipped
	builtin map[string]bool   // module names listed in modules.builtin
}

// Open indexes dir, a lib/modules/<release> directory; the release is dir's
// base name.
func Open(dir string) (*Tree, error) {
	t := &Tree{dir: dir, release: filepath.Base(dir), files: make(map[string]string)}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name, ok := moduleName(d.Name())
		if d.IsDir() || !ok {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if old, dup := t.files[name]; dup {
			return fmt.Errorf("module %s is both %s and %s", name, old, rel)
		}
		t.files[name] = filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing kernel modules in %s: %w", dir, err)
	}
	if t.builtin, err = readBuiltin(filepath.Join(dir, "modules.builtin")); err != nil {
		return nil, err
	}
	return t, nil
}

// Release returns the kernel release the tree belongs to.
func (t *Tree) Release() string { return t.release }

// Builtin reports whether the module is compiled into the kernel.
func (t *Tree) Builtin(name string) bool { return t.builtin[Normalize(name)] }

// Has reports whether the module is a loadable file in the tree.
func (t *Tree) Has(name string) bool {
	_, ok := t.files[Normalize(name)]
	return ok
}

// Resolution is the outcome of Resolve.
type Resolution struct {
	// Modules are in load order: every module after its dependencies.
	Modules []Module
	// Builtin lists the requested modules that need no loading because the
	// kernel has them built in.
	Builtin []string
}

// Resolve returns the requested modules and everything they depend on, in
// load order. The order is deterministic: requested modules in the order
// given, each preceded by its not yet listed dependencies (depth first, in
// the order the module names them). Requested modules that are built in are
// reported, not returned; a module that is neither is an error.
func (t *Tree) Resolve(names []string) (*Resolution, error) {
	r := &resolver{tree: t, state: make(map[string]int)}
	res := &Resolution{}
	for _, n := range names {
		name := Normalize(n)
		if !t.Has(name) && t.Builtin(name) {
			res.Builtin = append(res.Builtin, name)
			continue
		}
		if err := r.visit(name, nil); err != nil {
			return nil, err
		}
	}
	res.Modules = r.order
	return res, nil
}

const (
	visiting = 1
	done     = 2
)

// resolver walks the dependency graph depth first.
type resolver struct {
	tree  *Tree
	state map[string]int
	order []Module
}

// visit appends name after its dependencies; chain is the path that led
// here, for error messages.
func (r *resolver) visit(name string, chain []string) error {
	chain = append(chain, name)
	switch r.state[name] {
	case done:
		return nil
	case visiting:
		return fmt.Errorf("kernel modules depend on each other in a cycle: %s", strings.Join(chain, " -> "))
	}
	r.state[name] = visiting
	m, err := r.tree.load(name)
	if err != nil {
		if len(chain) > 1 {
			return fmt.Errorf("%s (needed by %s): %w", name, chain[len(chain)-2], err)
		}
		return err
	}
	for _, dep := range m.Depends {
		if r.tree.Builtin(dep) && !r.tree.Has(dep) {
			continue
		}
		if err := r.visit(dep, chain); err != nil {
			return err
		}
	}
	for _, dep := range m.SoftPre {
		if !r.tree.Has(dep) {
			continue // optional, as modprobe treats it
		}
		if err := r.visit(dep, chain); err != nil {
			return err
		}
	}
	r.state[name] = done
	r.order = append(r.order, *m)
	return nil
}

// load decompresses one module and reads its dependencies.
func (t *Tree) load(name string) (*Module, error) {
	rel, ok := t.files[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s is not in %s and not built into kernel %s", ErrNotFound, name, t.dir, t.release)
	}
	data, err := readModule(filepath.Join(t.dir, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	info, err := parseModinfo(data)
	if err != nil {
		return nil, fmt.Errorf("module %s (%s): %w", name, rel, err)
	}
	if err := info.check(name, t.release); err != nil {
		return nil, fmt.Errorf("module %s (%s): %w", name, rel, err)
	}
	return &Module{Name: name, Path: decompressedPath(rel), Data: data, Depends: info.depends, SoftPre: info.softPre}, nil
}

// Normalize returns the canonical form of a module name: the kernel treats
// "-" and "_" in module names alike.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// moduleName returns the module name of a file name like "virtio-rng.ko.xz".
func moduleName(file string) (string, bool) {
	for _, ext := range moduleExts {
		if base, ok := strings.CutSuffix(file, ext); ok && base != "" {
			return Normalize(base), true
		}
	}
	return "", false
}

// decompressedPath turns "a/b.ko.xz" into "a/b.ko".
func decompressedPath(rel string) string {
	return rel[:strings.LastIndex(rel, ".ko")+len(".ko")]
}

// readBuiltin reads modules.builtin: one path per line, like
// "kernel/fs/fuse/virtiofs.ko". A tree without the file has no built-ins.
func readBuiltin(file string) (map[string]bool, error) {
	builtin := make(map[string]bool)
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return builtin, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading built-in module list: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, ok := moduleName(filepath.Base(strings.TrimSpace(sc.Text()))); ok {
			builtin[name] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return builtin, nil
}

// Names returns the names of the modules, in order.
func Names(mods []Module) []string {
	names := make([]string, len(mods))
	for i, m := range mods {
		names[i] = m.Name
	}
	return names
}
