// Package launch is what the agent does at boot before it serves anything: it finds the
// initdata disk that the host attached (a read-only virtio-blk device, format
// initdata EncodeDisk), reads and parses the document, checks its digest against the
// launch measurement of the TEE (SNP HOST_DATA, TDX MRCONFIGID), and builds the policy engine
// from its policy.rego, and the agent's settings from its veil.toml (Settings). Without a
// disk a plain VM gets the allow-all policy.
//
// Every failure is an error whose text is one line naming the problem; the agent then
// serves nothing and exits, and init powers the VM off with that line on the console.
package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/initdata"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/imagepolicy"
	"github.com/veil-runtime/veil/policy/policies"
)

// LaunchDataReader reads the host data that the TEE measured at launch: SNP HOST_DATA
// (32 bytes) or TDX MRCONFIGID (48 bytes), from the guest's own attestation report.
type LaunchDataReader interface {
	HostData(ctx context.Context) ([]byte, error)
}

// Config says where the initdata comes from and what checks it.
type Config struct {
	Paths Paths
	// Serial is the initdata disk's virtio-blk serial ("" means initdata.DiskSerial).
	Serial string
	// Wait bounds the wait for a virtio block device that is still being probed.
	Wait time.Duration
	// TEE is the guest's TEE kind (none, snp, tdx, sim).
	TEE string
	// Reader reads the launch's host data; nil for a plain VM. With a TEE and no reader the
	// agent cannot check the initdata and refuses to start.
	Reader LaunchDataReader
	// Options are passed to policy.New.
	Options []policy.Option
}

// DefaultConfig is the guest's configuration for the TEE tee, with its reader (NewReader).
func DefaultConfig(tee string) Config {
	return Config{Paths: DefaultPaths, Serial: initdata.DiskSerial, Wait: 5 * time.Second, TEE: tee, Reader: NewReader(tee)}
}

// Launched is what the measured initdata gives the agent.
type Launched struct {
	// Engine is the policy to enforce.
	Engine *policy.Engine
	// Settings are the agent's settings (zero without a veil.toml entry or without initdata).
	Settings Settings
	// InitData is the initdata document's text as delivered (its digest is the launch's host
	// data), "" without initdata: the guest sends it with its evidence to a KBS.
	InitData string
	// ImagePolicy is the initdata's image security policy (initdata.KeyImagePolicy), nil
	// without one: every image is then accepted (insecureAcceptAnything).
	ImagePolicy *imagepolicy.Policy
}

// Load finds and reads the initdata disk and returns the policy engine the agent must
// enforce. Without a disk: allow-all in a plain VM, and in a TEE only when its host data is
// all zeros (nothing was bound at launch).
func Load(ctx context.Context, c Config) (*policy.Engine, error) {
	l, err := Boot(ctx, c)
	if err != nil {
		return nil, err
	}
	return l.Engine, nil
}

// Boot is Load that also returns the agent's settings from the initdata's veil.toml.
func Boot(ctx context.Context, c Config) (*Launched, error) {
	serial := c.Serial
	if serial == "" {
		serial = initdata.DiskSerial
	}
	dev, err := FindDevice(ctx, c.Paths, serial, c.Wait)
	if err != nil {
		return nil, oneLine(fmt.Errorf("initdata: %w", err))
	}
	if dev == "" {
		log.G(ctx).Infof("no initdata disk (serial %q): the allow-all policy, the default for tee none", serial)
		if err := Verify(ctx, c.TEE, c.Reader, nil); err != nil {
			return nil, oneLine(err)
		}
		e, err := policy.New(policies.AllowAll, c.Options...)
		if err != nil {
			return nil, oneLine(fmt.Errorf("allow-all policy: %w", err))
		}
		return &Launched{Engine: e}, nil
	}
	return BootDisk(ctx, c, dev)
}

// LoadDisk reads the initdata disk (or image file) at path, checks it against the launch and
// compiles its policy.
func LoadDisk(ctx context.Context, c Config, path string) (*policy.Engine, error) {
	l, err := BootDisk(ctx, c, path)
	if err != nil {
		return nil, err
	}
	return l.Engine, nil
}

// BootDisk is LoadDisk that also returns the agent's settings.
func BootDisk(ctx context.Context, c Config, path string) (*Launched, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, oneLine(fmt.Errorf("initdata: open disk: %w", err))
	}
	raw, err := initdata.ReadDisk(f)
	_ = f.Close()
	if err != nil {
		return nil, oneLine(fmt.Errorf("%w (disk %s)", err, path))
	}
	log.G(ctx).Infof("initdata: %d bytes from %s", len(raw), path)
	doc, err := Measured(ctx, c.TEE, c.Reader, raw)
	if err != nil {
		return nil, err
	}
	settings, err := documentSettings(doc)
	if err != nil {
		return nil, oneLine(err)
	}
	var imgPolicy *imagepolicy.Policy
	if text, ok := doc.Data[initdata.KeyImagePolicy]; ok {
		if imgPolicy, err = imagepolicy.Parse([]byte(text)); err != nil {
			return nil, oneLine(fmt.Errorf("initdata: %s: %w", initdata.KeyImagePolicy, err))
		}
		log.G(ctx).Infof("initdata: image security policy installed (%d bytes of %s)", len(text), initdata.KeyImagePolicy)
	}
	text, ok := doc.Policy()
	if !ok {
		if c.TEE != api.TEENone {
			return nil, fmt.Errorf("initdata: no %s in a confidential guest: refusing to serve without a measured policy", initdata.KeyPolicy)
		}
		log.G(ctx).Infof("initdata has no %s: the allow-all policy, the default for tee none", initdata.KeyPolicy)
		text = policies.AllowAll
	}
	opts := append([]policy.Option{policy.WithFilename(initdata.KeyPolicy)}, c.Options...)
	e, err := policy.New(text, opts...)
	if err != nil {
		return nil, policyError(err)
	}
	log.G(ctx).Infof("initdata: policy installed (%d bytes of %s)", len(text), initdata.KeyPolicy)
	if _, ok := doc.Data[initdata.KeyAgent]; ok {
		log.G(ctx).Infof("initdata: agent settings from %s: insecure registries %q, KBS %q", initdata.KeyAgent,
			settings.Image.InsecureRegistries, settings.KBS.URL)
	}
	return &Launched{Engine: e, Settings: settings, InitData: string(raw), ImagePolicy: imgPolicy}, nil
}

// Measured is the agent's launch check of raw, the initdata document it booted with: it parses
// the document (initdata.Parse, the rules the KBS applies to the init-data it is sent) and
// compares its digest with the launch's host data (Verify).
func Measured(ctx context.Context, tee string, r LaunchDataReader, raw []byte) (*initdata.Document, error) {
	doc, err := initdata.Parse(raw)
	if err != nil {
		return nil, oneLine(err)
	}
	log.G(ctx).Infof("initdata: %s digest %x", doc.Algorithm, doc.Digest())
	if err := Verify(ctx, tee, r, doc.Digest()); err != nil {
		return nil, oneLine(err)
	}
	return doc, nil
}

// Verify compares the launch's host data with digest (nil: no initdata, so the host data
// must be all zeros), zero-padded or truncated to the host data's size. A plain VM measures
// nothing: the step is skipped, and says so.
func Verify(ctx context.Context, tee string, r LaunchDataReader, digest []byte) error {
	if tee == api.TEENone || tee == "" {
		log.G(ctx).Info("tee none: no launch measurement to compare the initdata digest with; check skipped")
		return nil
	}
	if r == nil {
		return fmt.Errorf("initdata: tee %s: this agent cannot read the launch's host data yet, "+
			"so it cannot check the initdata digest: refusing to serve", tee)
	}
	hd, err := r.HostData(ctx)
	if err != nil {
		return fmt.Errorf("initdata: read the launch's host data (tee %s): %w", tee, err)
	}
	if len(hd) == 0 {
		return fmt.Errorf("initdata: tee %s reported empty host data", tee)
	}
	if want := initdata.HostData(digest, len(hd)); !bytes.Equal(hd, want) {
		if digest == nil {
			return fmt.Errorf("initdata: no initdata disk, but the launch's host data is %x, not zeros", hd)
		}
		return fmt.Errorf("initdata: digest %x does not match the launch's host data %x (tee %s)", digest, hd, tee)
	}
	log.G(ctx).Infof("initdata: digest matches the launch's host data (tee %s)", tee)
	return nil
}

// policyError says what is wrong with the initdata's policy in one line:
// "initdata: policy.rego:3: rego_parse_error: unexpected eof token" (several OPA errors are
// joined with "; ", without OPA's source excerpts).
func policyError(err error) error {
	var errs ast.Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		return oneLine(fmt.Errorf("initdata: %w", err))
	}
	var lines []string
	for _, e := range errs {
		line := e.Code + ": " + e.Message
		if e.Location != nil {
			line = fmt.Sprintf("%s:%d: %s", e.Location.File, e.Location.Row, line)
		}
		if !slices.Contains(lines, line) {
			lines = append(lines, line)
		}
	}
	return &lineError{msg: "initdata: " + strings.Join(lines, "; "), err: err}
}

// oneLine joins a multi-line error (OPA lists several errors on lines of their own) into one
// line for the console, keeping it wrapped.
func oneLine(err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "\n") {
		return err
	}
	return &lineError{msg: strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " | ")), " "), err: err}
}

type lineError struct {
	msg string
	err error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.err }
