package payload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/veil-runtime/veil/deploy/installer/internal/atomicfile"
)

// Result says what Install did, by relative path.
type Result struct {
	Written, Unchanged, Removed []string
}

// Changed reports whether Install changed any file.
func (r *Result) Changed() bool { return len(r.Written)+len(r.Removed) > 0 }

type staged struct {
	f    *os.File
	dst  string
	perm os.FileMode
}

// Install puts the payload's files from src into dest (where the installer sees the install
// directory). Every file is verified first; then each one that differs from what dest holds
// is copied to a temporary file beside its destination and checked again while copied; only
// when all are staged are they renamed into place (files under bin/ and files with an
// execute bit 0755, the rest 0644). Files of an earlier install (previous) that the
// manifest no longer lists are removed.
func Install(src string, m *Manifest, dest string, previous []string) (*Result, error) {
	if err := m.Verify(src); err != nil {
		return nil, err
	}
	res := &Result{}
	var todo []staged
	abort := func() {
		for _, s := range todo {
			atomicfile.Abort(s.f)
			prune(dest, filepath.Dir(s.dst))
		}
	}
	for _, f := range m.Files {
		sp := filepath.Join(src, filepath.FromSlash(f.Path))
		dst := filepath.Join(dest, filepath.FromSlash(f.Path))
		fi, err := os.Stat(sp)
		if err != nil {
			abort()
			return nil, fmt.Errorf("payload file %s: %w", f.Path, err)
		}
		perm := os.FileMode(0o644)
		if fi.Mode()&0o111 != 0 || strings.HasPrefix(f.Path, "bin/") {
			perm = 0o755 // bin/ is executable even if an image build lost the mode
		}
		if same(dst, f.SHA256, perm) {
			res.Unchanged = append(res.Unchanged, f.Path)
			continue
		}
		tmp, err := stage(sp, dst, f)
		if err != nil {
			abort()
			return nil, err
		}
		todo = append(todo, staged{tmp, dst, perm})
		res.Written = append(res.Written, f.Path)
	}
	for i, s := range todo {
		if err := atomicfile.Commit(s.f, s.dst, s.perm); err != nil {
			todo = todo[i+1:]
			abort()
			return nil, fmt.Errorf("install %s: %w (files before it were replaced)", s.dst, err)
		}
	}
	for _, rel := range previous {
		if m.Has(rel) || checkRel(rel) != nil {
			continue
		}
		removed, err := removeFile(dest, rel)
		if err != nil {
			return res, err
		}
		if removed {
			res.Removed = append(res.Removed, rel)
		}
	}
	return res, nil
}

// same reports whether dst already is the file: a regular file with the digest and mode.
func same(dst, sum string, perm os.FileMode) bool {
	fi, err := os.Lstat(dst)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != perm {
		return false
	}
	got, err := atomicfile.SHA256(dst)
	return err == nil && got == sum
}

// stage copies src to a temporary file beside dst, hashing what it copies.
func stage(src, dst string, f File) (*os.File, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("payload file %s: %w", f.Path, err)
	}
	defer in.Close()
	tmp, err := atomicfile.Temp(dst)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), in); err != nil {
		atomicfile.Abort(tmp)
		return nil, fmt.Errorf("copy payload file %s to %s: %w", f.Path, tmp.Name(), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		atomicfile.Abort(tmp)
		return nil, fmt.Errorf("payload file %s changed while copied: sha256 %s, want %s: refusing to install anything",
			f.Path, got, f.SHA256)
	}
	return tmp, nil
}

// Remove removes the files rel (relative to dest) and the directories they leave empty,
// up to and including dest. It reports the files it removed.
func Remove(dest string, rels []string) ([]string, error) {
	var removed []string
	var errs []error
	for _, rel := range rels {
		if err := checkRel(rel); err != nil {
			errs = append(errs, err)
			continue
		}
		ok, err := removeFile(dest, rel)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			removed = append(removed, rel)
		}
	}
	os.Remove(dest) // only when empty
	return removed, errors.Join(errs...)
}

func removeFile(dest, rel string) (bool, error) {
	p := filepath.Join(dest, filepath.FromSlash(rel))
	ok, err := atomicfile.Remove(p)
	if err != nil {
		return false, err
	}
	prune(dest, filepath.Dir(p))
	return ok, nil
}

// prune removes dir and its parents while they are empty, stopping below dest.
func prune(dest, dir string) {
	dest = filepath.Clean(dest)
	for dir = filepath.Clean(dir); strings.HasPrefix(dir, dest+string(filepath.Separator)); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			return
		}
	}
}
