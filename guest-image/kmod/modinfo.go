package kmod

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// moduleExts are the module file name endings the tree understands.
var moduleExts = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// readModule reads a module file and decompresses it if needed.
func readModule(file string) ([]byte, error) {
	switch {
	case strings.HasSuffix(file, ".ko.xz"):
		return decompressTool(file, "xz", "xz-utils")
	case strings.HasSuffix(file, ".ko.zst"):
		return decompressTool(file, "zstd", "zstd")
	case strings.HasSuffix(file, ".ko.gz"):
		return gunzip(file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading kernel module: %w", err)
	}
	return data, nil
}

// decompressTool runs "tool -dc file" and returns its output.
func decompressTool(file, tool, pkg string) ([]byte, error) {
	bin, err := exec.LookPath(tool)
	if err != nil {
		return nil, fmt.Errorf("decompressing %s needs the %s tool (apt-get install %s): %w", file, tool, pkg, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-dc", "--", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("decompressing %s with %s: %w: %s", file, tool, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// gunzip decompresses a gzip file.
func gunzip(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading kernel module: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", file, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", file, err)
	}
	return data, nil
}

// modinfo holds the .modinfo entries the resolver uses.
type modinfo struct {
	name     string
	vermagic string
	depends  []string
	softPre  []string
}

// parseModinfo reads the .modinfo section of a module: NUL-separated
// "key=value" strings.
func parseModinfo(data []byte) (*modinfo, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not an ELF kernel module: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	raw, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo: %w", err)
	}
	info := &modinfo{}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		key, value, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch key {
		case "name":
			info.name = Normalize(value)
		case "vermagic":
			info.vermagic = value
		case "depends":
			info.depends = appendNames(info.depends, strings.Split(value, ","))
		case "softdep":
			info.softPre = appendNames(info.softPre, softdepPre(value))
		}
	}
	return info, nil
}

// softdepPre returns the modules named after "pre:" in a softdep value such
// as "pre: crc32c post: foo".
func softdepPre(value string) []string {
	var pre []string
	inPre := false
	for _, word := range strings.Fields(value) {
		switch word {
		case "pre:":
			inPre = true
		case "post:":
			inPre = false
		default:
			if inPre {
				pre = append(pre, word)
			}
		}
	}
	return pre
}

// appendNames appends the non-empty names, normalized.
func appendNames(dst, names []string) []string {
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" {
			dst = append(dst, Normalize(n))
		}
	}
	return dst
}

// check verifies that the module is the one its file name says and that it
// was built for release (vermagic starts with the release).
func (i *modinfo) check(name, release string) error {
	if i.name != "" && i.name != name {
		return fmt.Errorf("its .modinfo names it %q", i.name)
	}
	if got, _, _ := strings.Cut(i.vermagic, " "); got != release {
		return fmt.Errorf("built for kernel %q, not %q", got, release)
	}
	return nil
}
