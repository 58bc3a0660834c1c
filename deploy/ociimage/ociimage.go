// Package ociimage builds small, reproducible OCI images from files on disk, without Docker:
// one gzip layer of the listed files (sorted, owned by 0:0, stamped with one fixed time), a
// config (entrypoint, environment, user, labels) for linux/amd64, written as an OCI image
// layout directory and as an OCI archive (a tar of that layout) that `ctr images import`
// loads and `crane push` or `skopeo copy` can push. The same inputs give the same bytes, so
// the same digest. `make images` uses it (cmd/veil-ociimage) to build the veil-kbs and
// veil-installer images; see docs/images.md.
package ociimage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
)

// File is one entry of the image's filesystem.
type File struct {
	// Path is where the entry goes in the image, relative to its root ("usr/local/bin/x";
	// a leading "/" is ignored). It may not contain "." or ".." elements.
	Path string
	// Mode is the entry's permission bits, with setuid, setgid and sticky (07777 at most).
	Mode fs.FileMode
	// Source is the file on disk whose contents the entry gets; empty makes a directory.
	Source string
}

// Dir reports whether f is a directory.
func (f File) Dir() bool { return f.Source == "" }

// Spec describes an image.
type Spec struct {
	// Name is the image's reference ("veil-kbs:dev", "registry.example/veil/veil-kbs:v1"); a
	// name without a tag gets ":latest". It is recorded in the layout's index (see
	// WriteLayout), not in the image, so it does not change the digest.
	Name string
	// Files are the entries of the image's single layer. Missing parent directories are
	// added with mode 0755.
	Files []File
	// Checksums are directories of the image (such as "opt/veil-payload") that get a
	// SHA256SUMS file (sha256sum's format: "<hex>  <path>", paths relative to the directory,
	// sorted) over every regular file beneath them.
	Checksums []string
	// Entrypoint, Cmd, Env, User, WorkingDir and Labels go into the image's config.
	Entrypoint, Cmd, Env []string
	User, WorkingDir     string
	Labels               map[string]string
	// Created is the time stamped on every entry and on the config. Zero is the Unix epoch;
	// SourceDateEpoch reads it from the environment.
	Created time.Time
}

// SumsFile is the name of the checksum file written in each of Spec.Checksums.
const SumsFile = "SHA256SUMS"

// SourceDateEpoch returns the time in $SOURCE_DATE_EPOCH (seconds since the epoch), the
// reproducible-builds convention, or the epoch when it is not set.
func SourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	s, err := strconv.ParseInt(v, 10, 64)
	if err != nil || s < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: not a number of seconds", v)
	}
	return time.Unix(s, 0).UTC(), nil
}

// NormalizeName returns the full reference that containerd and Kubernetes use for name:
// "veil-kbs:dev" is "docker.io/library/veil-kbs:dev". A name without a tag gets ":latest";
// digests are refused (a layout names an image by a tag).
func NormalizeName(name string) (string, error) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", name, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return "", fmt.Errorf("image name %q: a digest cannot name a built image", name)
	}
	return reference.TagNameOnly(named).String(), nil
}

// cleanPath checks an image path and returns it without a leading or trailing "/".
func cleanPath(p string) (string, error) {
	q := strings.Trim(p, "/")
	if q == "" {
		return "", fmt.Errorf("image path %q: empty", p)
	}
	for _, el := range strings.Split(q, "/") {
		switch el {
		case "", ".", "..":
			return "", fmt.Errorf("image path %q: %q elements are not allowed", p, el)
		}
	}
	if strings.ContainsRune(q, 0) {
		return "", fmt.Errorf("image path %q: NUL byte", p)
	}
	return q, nil
}

// entry is a checked File: its clean path and, for a regular file, its contents.
type entry struct {
	path string
	mode fs.FileMode
	dir  bool
	data []byte
}

// collect checks the spec's files, reads their contents, adds missing parent directories and
// the checksum files, and returns the entries sorted by path. Every problem is reported.
func (s *Spec) collect() ([]entry, error) {
	var errs []error
	byPath := map[string]*entry{}
	for _, f := range s.Files {
		p, err := cleanPath(f.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if f.Mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			errs = append(errs, fmt.Errorf("%s: mode %#o: only permission bits and fs.ModeSetuid, ModeSetgid, ModeSticky", p, uint32(f.Mode)))
			continue
		}
		if byPath[p] != nil {
			errs = append(errs, fmt.Errorf("%s: listed twice", p))
			continue
		}
		e := &entry{path: p, mode: f.Mode, dir: f.Dir()}
		if !e.dir {
			if e.data, err = readRegular(f.Source); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
				continue
			}
		}
		byPath[p] = e
	}
	// The sums cover the listed files only, so they do not depend on the order of Checksums.
	var sums []*entry
	for _, d := range s.Checksums {
		p, err := cleanPath(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("checksums: %w", err))
			continue
		}
		if e := byPath[p]; e != nil && !e.dir {
			errs = append(errs, fmt.Errorf("checksums: %s is a file", p))
			continue
		}
		sums = append(sums, &entry{path: path.Join(p, SumsFile), mode: 0o644, data: checksums(p, byPath)})
	}
	for _, e := range sums {
		if byPath[e.path] != nil {
			errs = append(errs, fmt.Errorf("%s: listed, but it is generated", e.path))
			continue
		}
		byPath[e.path] = e
	}
	errs = append(errs, addParents(byPath)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	entries := make([]entry, 0, len(byPath))
	for _, e := range byPath {
		entries = append(entries, *e)
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.path, b.path) })
	return entries, nil
}

// addParents adds the missing parent directories and reports files that are also parents.
func addParents(byPath map[string]*entry) []error {
	var errs []error
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			switch e := byPath[d]; {
			case e == nil:
				byPath[d] = &entry{path: d, mode: 0o755, dir: true}
			case !e.dir:
				errs = append(errs, fmt.Errorf("%s: its parent %s is a file", p, d))
			}
		}
	}
	return errs
}

// readRegular reads a regular file (a symbolic link is followed).
func readRegular(file string) ([]byte, error) {
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != st.Size() {
		return nil, fmt.Errorf("%s changed while it was read", file)
	}
	return data, nil
}
