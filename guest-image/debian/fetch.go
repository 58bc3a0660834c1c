package debian

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Unpack extracts the files of a .deb into dir with dpkg-deb, without
// installing anything or running maintainer scripts. It unpacks into a
// temporary sibling and renames it, so dir either is complete or does not
// exist; an existing dir is taken as already unpacked.
func Unpack(ctx context.Context, deb, dir string) (cached bool, err error) {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return true, nil
	}
	bin, err := exec.LookPath("dpkg-deb")
	if err != nil {
		return false, fmt.Errorf("dpkg-deb not found (apt-get install dpkg): %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return false, fmt.Errorf("creating unpack directory: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".unpack-")
	if err != nil {
		return false, fmt.Errorf("creating unpack directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-x", deb, tmp)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return false, fmt.Errorf("unpacking %s: %w: %s", deb, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(tmp, dir); err != nil {
		return false, fmt.Errorf("storing unpacked %s: %w", deb, err)
	}
	return false, nil
}

// FileSHA256 returns the hex SHA-256 of a file.
func FileSHA256(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("hashing: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
