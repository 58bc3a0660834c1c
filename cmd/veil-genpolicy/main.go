// Command veil-genpolicy makes the agent policy of a pod: from a pod (or workload) YAML it
// resolves every image to its digest, writes a policy that pins what the pod declared, wraps
// it in initdata, and writes the YAML back with the initdata annotation. See docs/policy.md.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy/genpolicy"
	"github.com/veil-runtime/veil/policy/imagepolicy"
)

// addImagePolicy puts the policy file path (if any) into the initdata entries, and checks
// the entry, from --image-policy or --initdata, with the parser the agent uses: a policy the
// agent would refuse at boot is refused here.
func addImagePolicy(extra initdataFlag, path string) error {
	if path != "" {
		if _, ok := extra[initdata.KeyImagePolicy]; ok {
			return fmt.Errorf("--image-policy and --initdata %s=... both set the image policy", initdata.KeyImagePolicy)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("--image-policy: %w", err)
		}
		extra[initdata.KeyImagePolicy] = string(b)
	}
	text, ok := extra[initdata.KeyImagePolicy]
	if !ok {
		return nil
	}
	if _, err := imagepolicy.Parse([]byte(text)); err != nil {
		if path == "" {
			path = "--initdata " + initdata.KeyImagePolicy
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

const usage = `usage: veil-genpolicy -f POD.yaml [-o OUT.yaml] [--out-dir DIR] [--settings FILE.json]
       [--algorithm sha256|sha384|sha512] [--platform linux/amd64] [--plain-http-loopback] [--sandbox-image REF]
       [--initdata KEY=FILE]... [--withhold-output] [--decision-log] [--guest-pull [--veil-snapshotter]]
       [--image-policy POLICY.json]
`

type initdataFlag map[string]string

func (f initdataFlag) String() string { return fmt.Sprint(map[string]string(f)) }

func (f initdataFlag) Set(v string) error {
	key, path, ok := strings.Cut(v, "=")
	if !ok || key == "" {
		return fmt.Errorf("want KEY=FILE, got %q", v)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	f[key] = string(b)
	return nil
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "veil-genpolicy:", err)
		os.Exit(1)
	}
}

// run is the command; it reports digests and warnings on stderr.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("veil-genpolicy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	in := fs.String("f", "", "pod or workload YAML (- for stdin)")
	out := fs.String("o", "-", "where to write the YAML with the initdata annotation (- for stdout)")
	outDir := fs.String("out-dir", "", "also write <kind>-<name>.rego and <kind>-<name>.initdata.toml here")
	settingsFile := fs.String("settings", "", "JSON settings over the defaults (see docs/policy.md)")
	algorithm := fs.String("algorithm", "sha256", "initdata digest algorithm")
	platform := fs.String("platform", "linux/amd64", "platform of multi-platform images")
	plainHTTP := fs.Bool("plain-http-loopback", false, "allow plain HTTP to registries on loopback addresses")
	withhold := fs.Bool("withhold-output", false, "withhold the containers' stdout and stderr from the host")
	sandboxImage := fs.String("sandbox-image", "", "the pod sandbox (pause) image, as containerd's sandbox_image (default "+
		genpolicy.DefaultSettings().SandboxImage+"; \"none\" leaves the sandbox out; with --guest-pull only \"none\" matters: "+
		"the sandbox runs the guest image's pause program)")
	decisionLog := fs.Bool("decision-log", false, "a debugging policy: let the host read the agent's decision log")
	guestPull := fs.Bool("guest-pull", false, "require the pod's containers to run from images the guest pulls itself, "+
		"and the sandbox to run the guest image's pause program (the runtime's guest_pull on)")
	veilSnapshotter := fs.Bool("veil-snapshotter", false, "with --guest-pull: the runtime handler's containerd snapshotter is "+
		"veil-snapshotter (no image layer on the host), so containerd resolves users in an empty root file system; "+
		"pin what that gives (docs/snapshotter.md)")
	extra := initdataFlag{}
	fs.Var(extra, "initdata", "more initdata entries, KEY=FILE (aa.toml=aa.toml); repeatable")
	imagePolicy := fs.String("image-policy", "", "an image security policy (containers-policy.json, docs/imagesig.md) for the "+
		"agent to enforce on the images it pulls: checked, then written into initdata as "+initdata.KeyImagePolicy)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := addImagePolicy(extra, *imagePolicy); err != nil {
		return err
	}
	if *in == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("-f is required and no arguments are taken")
	}
	y, err := readInput(*in)
	if err != nil {
		return err
	}
	plat, err := v1.ParsePlatform(*platform)
	if err != nil {
		return fmt.Errorf("--platform: %w", err)
	}
	opts := genpolicy.Options{
		Resolver:  &genpolicy.RegistryResolver{Platform: *plat, PlainHTTPLoopback: *plainHTTP},
		Algorithm: *algorithm, ExtraData: extra, WithholdOutput: *withhold, DecisionLog: *decisionLog,
		GuestPull: *guestPull, VeilSnapshotter: *veilSnapshotter,
	}
	if *settingsFile != "" {
		b, err := os.ReadFile(*settingsFile)
		if err != nil {
			return err
		}
		if opts.Settings, err = genpolicy.ParseSettings(b); err != nil {
			return fmt.Errorf("%s: %w", *settingsFile, err)
		}
	}
	if *sandboxImage != "" {
		if opts.Settings == nil {
			opts.Settings = genpolicy.DefaultSettings()
		}
		opts.Settings.SandboxImage = *sandboxImage
		if *sandboxImage == "none" {
			opts.Settings.SandboxImage = ""
		}
	}
	res, err := genpolicy.Generate(ctx, y, opts)
	if err != nil {
		return err
	}
	return write(res, *out, *outDir, *algorithm, stderr)
}

// write reports each workload's digest and the warnings, and writes the YAML and, with
// outDir, the policies and initdata documents.
func write(res *genpolicy.Result, out, outDir, algorithm string, stderr io.Writer) error {
	for _, m := range res.Warnings {
		fmt.Fprintln(stderr, "veil-genpolicy: warning:", m)
	}
	for _, w := range res.Workloads {
		fmt.Fprintf(stderr, "%s/%s: initdata %s %s\n", w.Kind, w.Name, algorithm, hex.EncodeToString(w.Digest))
		for _, c := range w.Data.Containers {
			fmt.Fprintf(stderr, "  %s: %s@%s\n    args %q\n    user %s:%s groups %v\n", c.Name, c.Image, c.ImageDigest,
				c.Args, id(c.Security.UID), id(c.Security.GID), c.Security.AdditionalGids)
			if len(c.Exec) > 0 {
				fmt.Fprintf(stderr, "    exec %q\n", c.Exec)
			}
		}
		if outDir == "" {
			continue
		}
		base := filepath.Join(outDir, strings.ToLower(w.Kind)+"-"+w.Name)
		if err := os.WriteFile(base+".rego", []byte(w.Policy), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(base+".initdata.toml", w.InitData, 0o644); err != nil {
			return err
		}
	}
	if out == "-" {
		_, err := os.Stdout.Write(res.YAML)
		return err
	}
	return os.WriteFile(out, res.YAML, 0o644)
}

// id shows a uid or gid of the policy: "*" when it is not pinned.
func id(p *int64) string {
	if p == nil {
		return "*"
	}
	return strconv.FormatInt(*p, 10)
}

func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}
