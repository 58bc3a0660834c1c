// Package payload is the set of files the installer's image carries for the node (the shim,
// the guest image, the per-handler configurations) and their digests: a directory laid out
// as the install directory (/opt/veil) plus SHA256SUMS, in sha256sum's format.
//
// Install verifies every file against SHA256SUMS before it touches the host, stages each
// beside its destination and checks the staged copy's digest again, and only then renames
// them into place, so a bad payload installs nothing. Build makes such a directory.
package payload

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/veil-runtime/veil/deploy/installer/internal/atomicfile"
)

// ManifestName is the digest list at the payload's top.
const ManifestName = "SHA256SUMS"

// File is one file of the payload: its path relative to the payload (and to the install
// directory), slash-separated, and its hex SHA-256.
type File struct {
	Path   string
	SHA256 string
}

// Manifest lists the payload's files, sorted by path.
type Manifest struct {
	Files []File
}

// Has reports whether the manifest lists rel.
func (m *Manifest) Has(rel string) bool {
	for _, f := range m.Files {
		if f.Path == rel {
			return true
		}
	}
	return false
}

// Paths lists the files' relative paths.
func (m *Manifest) Paths() []string {
	out := make([]string, len(m.Files))
	for i, f := range m.Files {
		out[i] = f.Path
	}
	return out
}

// Read reads dir/SHA256SUMS: lines "<64 hex digits>  <relative path>" (one space and a `*`
// for binary mode are accepted too). Absolute paths, "..", duplicates and bad digests are
// errors that name the line.
func Read(dir string) (*Manifest, error) {
	name := filepath.Join(dir, ManifestName)
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("payload manifest: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("payload manifest %s: %w", name, err)
	}
	return m, nil
}

// Parse reads SHA256SUMS content.
func Parse(data []byte) (*Manifest, error) {
	m := &Manifest{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sum, rel, ok := strings.Cut(line, " ")
		rel = strings.TrimPrefix(strings.TrimPrefix(rel, " "), "*")
		if b, err := hex.DecodeString(sum); !ok || err != nil || len(b) != 32 {
			return nil, fmt.Errorf("line %d: want \"<sha256 hex>  <path>\", got %q", n, line)
		}
		if err := checkRel(rel); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if seen[rel] {
			return nil, fmt.Errorf("line %d: %s listed twice", n, rel)
		}
		seen[rel] = true
		m.Files = append(m.Files, File{Path: rel, SHA256: strings.ToLower(sum)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(m.Files) == 0 {
		return nil, fmt.Errorf("no file listed")
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return m, nil
}

// checkRel accepts a clean relative slash path that stays inside its directory.
func checkRel(rel string) error {
	if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") ||
		strings.ContainsAny(rel, "\\\x00\n") || rel == ManifestName {
		return fmt.Errorf("path %q: want a clean relative path inside the payload", rel)
	}
	return nil
}

// Format writes the manifest in sha256sum's format.
func (m *Manifest) Format() []byte {
	var b bytes.Buffer
	for _, f := range m.Files {
		fmt.Fprintf(&b, "%s  %s\n", f.SHA256, f.Path)
	}
	return b.Bytes()
}

// Verify hashes every listed file of the payload dir; a missing file or a digest that does
// not match is an error naming the file and both digests. Files the manifest does not list
// are ignored (they are never installed).
func (m *Manifest) Verify(dir string) error {
	for _, f := range m.Files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("payload file %s: %w", f.Path, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("payload file %s: not a regular file (%v)", f.Path, fi.Mode().Type())
		}
		got, err := atomicfile.SHA256(p)
		if err != nil {
			return fmt.Errorf("payload file %s: %w", f.Path, err)
		}
		if got != f.SHA256 {
			return fmt.Errorf("payload file %s: sha256 %s, but %s says %s: refusing to install anything",
				f.Path, got, ManifestName, f.SHA256)
		}
	}
	return nil
}
