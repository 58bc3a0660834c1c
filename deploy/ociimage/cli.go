package ociimage

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Usage is the command line of veil-ociimage.
const Usage = `veil-ociimage --name NAME --layout DIR [--archive FILE]
    [--file IMAGE-PATH=SOURCE]... [--dir IMAGE-PATH=MODE]... [--tree IMAGE-DIR=DIR]...
    [--manifest FILE]...
    [--sha256sums IMAGE-DIR]... [--entrypoint ARG]... [--cmd ARG]... [--env K=V]...
    [--user USER] [--workdir DIR] [--label K=V]...

Builds a linux/amd64 OCI image of one layer holding the listed files, writes it as an OCI
layout in DIR and, with --archive, as an OCI archive that 'ctr images import' loads, and
prints its name and digest. Every entry is owned by 0:0 and stamped with $SOURCE_DATE_EPOCH
(default 0), so the same inputs give the same digest.

  --file IMAGE-PATH=SOURCE   a regular file; mode 0755 when SOURCE is executable, else 0644
  --dir IMAGE-PATH=MODE      a directory with an octal mode (tmp=1777)
  --tree IMAGE-DIR=DIR       every directory (0755) and regular file beneath DIR, modes as
                             for --file; symbolic links and other files are refused
  --manifest FILE            lines "IMAGE-PATH MODE [SOURCE]" (no SOURCE: a directory);
                             '#' starts a comment; relative SOURCEs are relative to the
                             current directory
  --sha256sums IMAGE-DIR     write IMAGE-DIR/SHA256SUMS over the files beneath IMAGE-DIR
`

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// Command runs veil-ociimage with args (without the program name) and prints the image's
// name, digest and outputs to stdout.
func Command(args []string, stdout, stderr io.Writer) error {
	set := flag.NewFlagSet("veil-ociimage", flag.ContinueOnError)
	set.SetOutput(stderr)
	set.Usage = func() { fmt.Fprint(stderr, Usage) }
	var (
		name, layoutDir, archive, user, workdir                      string
		files, dirs, trees, manifests, sums, entry, cmd, env, labels listFlag
	)
	set.StringVar(&name, "name", "", "image name")
	set.StringVar(&layoutDir, "layout", "", "OCI layout directory to write")
	set.StringVar(&archive, "archive", "", "OCI archive to write")
	set.StringVar(&user, "user", "", "config User")
	set.StringVar(&workdir, "workdir", "", "config WorkingDir")
	for n, l := range map[string]*listFlag{"file": &files, "dir": &dirs, "tree": &trees, "manifest": &manifests,
		"sha256sums": &sums, "entrypoint": &entry, "cmd": &cmd, "env": &env, "label": &labels} {
		set.Var(l, n, "repeatable")
	}
	if err := set.Parse(args); err != nil {
		return err
	}
	if set.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", set.Args())
	}
	if name == "" || layoutDir == "" {
		return errors.New("--name and --layout are required")
	}
	spec := Spec{Name: name, Checksums: sums, Entrypoint: entry, Cmd: cmd, Env: env, User: user, WorkingDir: workdir}
	var errs []error
	spec.Files, errs = parseFileFlags(files, dirs)
	for _, tr := range trees {
		p, src, ok := strings.Cut(tr, "=")
		if !ok || p == "" || src == "" {
			errs = append(errs, fmt.Errorf("--tree %q: want IMAGE-DIR=DIR", tr))
			continue
		}
		fl, err := Tree(p, src)
		errs = append(errs, err)
		spec.Files = append(spec.Files, fl...)
	}
	for _, m := range manifests {
		fl, err := ReadManifest(m)
		errs = append(errs, err)
		spec.Files = append(spec.Files, fl...)
	}
	var err error
	spec.Labels, err = keyValues(labels)
	errs = append(errs, err)
	spec.Created, err = SourceDateEpoch()
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	img, err := Build(spec)
	if err != nil {
		return err
	}
	if err := img.Write(layoutDir, archive); err != nil {
		return err
	}
	out := layoutDir
	if archive != "" {
		out += ", " + archive
	}
	_, err = fmt.Fprintf(stdout, "%s %s (%s)\n", img.Name, img.Digest, out)
	return err
}

// parseFileFlags reads --file IMAGE-PATH=SOURCE and --dir IMAGE-PATH=MODE.
func parseFileFlags(files, dirs []string) ([]File, []error) {
	var out []File
	var errs []error
	for _, f := range files {
		p, src, ok := strings.Cut(f, "=")
		if !ok || p == "" || src == "" {
			errs = append(errs, fmt.Errorf("--file %q: want IMAGE-PATH=SOURCE", f))
			continue
		}
		st, err := os.Stat(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("--file %s: %w", p, err))
			continue
		}
		out = append(out, File{Path: p, Mode: NormalMode(st.Mode()), Source: src})
	}
	for _, d := range dirs {
		p, m, ok := strings.Cut(d, "=")
		mode, err := ParseMode(m)
		if !ok || p == "" || err != nil {
			errs = append(errs, fmt.Errorf("--dir %q: want IMAGE-PATH=OCTAL-MODE", d))
			continue
		}
		out = append(out, File{Path: p, Mode: mode})
	}
	return out, errs
}

// NormalMode is the mode a file gets from its mode on disk: 0755 when its owner may execute
// it, else 0644, so that the umask of a checkout or build does not change the image.
func NormalMode(m fs.FileMode) fs.FileMode {
	if m&0o100 != 0 {
		return 0o755
	}
	return 0o644
}

// Tree lists dir and every directory (0755) and regular file (NormalMode) beneath it, to go
// under imageDir in the image. Symbolic links and special files are refused.
func Tree(imageDir, dir string) ([]File, error) {
	var out []File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		ip := path.Join(imageDir, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			out = append(out, File{Path: ip, Mode: 0o755})
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			out = append(out, File{Path: ip, Mode: NormalMode(info.Mode()), Source: p})
		default:
			return fmt.Errorf("%s: not a regular file or directory", p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("--tree %s: %w", dir, err)
	}
	return out, nil
}

// ReadManifest reads a file list: one entry per line, "IMAGE-PATH MODE [SOURCE]" separated
// by blanks, MODE in octal (setuid 4000, setgid 2000, sticky 1000), no SOURCE for a
// directory; blank lines and lines starting with '#' are skipped.
func ReadManifest(file string) ([]File, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	var out []File
	var errs []error
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || len(fields) > 3 {
			errs = append(errs, fmt.Errorf("%s:%d: want IMAGE-PATH MODE [SOURCE]", file, n))
			continue
		}
		mode, err := ParseMode(fields[1])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", file, n, err))
			continue
		}
		e := File{Path: fields[0], Mode: mode}
		if len(fields) == 3 {
			e.Source = fields[2]
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("manifest %s: %w", file, err))
	}
	return out, errors.Join(errs...)
}

// ParseMode parses an octal mode such as "0755" or "1777" (sticky) into a FileMode.
func ParseMode(s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal, at most 7777", s)
	}
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}

// keyValues parses K=V pairs.
func keyValues(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	var errs []error
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("--label %q: want KEY=VALUE", kv))
			continue
		}
		m[k] = v
	}
	return m, errors.Join(errs...)
}
