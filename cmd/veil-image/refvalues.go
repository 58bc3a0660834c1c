package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/sim/psp"
	"github.com/veil-runtime/veil/guest-image/manifest"
	"github.com/veil-runtime/veil/initdata"
)

// listFlag is a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// referenceValues prints the reference values a KBS needs for an image, in the format veil-kbs
// reads (appraisal.ReferenceValues: DATA/reference-values.json), and with --initdata the
// initdata digests to bind (repository-bindings.json).
func referenceValues(args []string) error {
	return referenceValuesTo(args, os.Stdout, os.Stderr)
}

func referenceValuesTo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("veil-image reference-values", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tee := fs.String("tee", "sim", "the TEE: sim (SNP and TDX launch measurements are not computed yet)")
	params := fs.String("kernel-params", "", "the runtime handler's kernel_params (shim configuration), appended to the image's command line as the shim does")
	var docs listFlag
	fs.Var(&docs, "initdata", "an initdata document (TOML) whose digest the KBS binds (repeatable)")
	repo := fs.String("repository", "default", "with --initdata: the repository the digests are bound to")
	bindings := fs.String("bindings", "", "with --initdata: write the binding to this file, in veil-kbs's repository-bindings.json format")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: veil-image reference-values [--kernel-params \"…\"] [--initdata FILE]… [--bindings FILE] IMAGEDIR")
	}
	if *tee != "sim" {
		return fmt.Errorf("--tee %s: only the sim TEE's launch measurement is computed so far (SNP and TDX: not done, docs/guest-image.md)", *tee)
	}
	dir := fs.Arg(0)
	m, err := manifest.Read(dir)
	if err != nil {
		return err
	}
	if err := m.Verify(dir); err != nil {
		return fmt.Errorf("%s does not match its manifest: %w", dir, err)
	}
	if m.SimAuthority == nil {
		fmt.Fprintf(stderr, "reference-values: note: %s carries no sim authority, so it cannot boot as a sim guest\n", dir)
	}
	rv, err := simReferenceValues(m, *params)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rv, "", "  ")
	if err != nil {
		return err
	}
	if _, err := stdout.Write(append(b, '\n')); err != nil {
		return err
	}
	if len(docs) == 0 {
		if *bindings != "" {
			return errors.New("--bindings needs --initdata")
		}
		return nil
	}
	var digests []string
	for _, f := range docs {
		raw, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("initdata: %w", err)
		}
		d, err := initdata.Parse(raw)
		if err != nil {
			return fmt.Errorf("initdata %s: %w", f, err)
		}
		digests = append(digests, hex.EncodeToString(d.Digest()))
		fmt.Fprintf(stderr, "reference-values: initdata %s: %s %s\n", f, d.Algorithm, digests[len(digests)-1])
	}
	if *bindings != "" {
		bb, err := json.MarshalIndent(map[string][]string{*repo: digests}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*bindings, append(bb, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// simReferenceValues are the SNP reference values of a sim guest of m: the launch measurement
// the shim's sim PSP reports (psp.LaunchMeasurement of the kernel, the initrd and the command
// line the VM boots with: the image's, the handler's kernel_params, veil.tee=sim), and
// simulated evidence accepted.
func simReferenceValues(m *manifest.Manifest, kernelParams string) (*appraisal.ReferenceValues, error) {
	cmdline := append(strings.Fields(m.Cmdline), strings.Fields(kernelParams)...)
	cmdline = append(cmdline, psp.KernelParam+"="+psp.KernelParamSim)
	meas, err := psp.LaunchMeasurement(m.Kernel.SHA384, m.Initrd.SHA384, strings.Join(cmdline, " "))
	if err != nil {
		return nil, err
	}
	rv := &appraisal.ReferenceValues{SNP: &appraisal.SNPReference{Measurements: []string{hex.EncodeToString(meas[:])}, AllowSimulated: true}}
	if err := rv.Validate(); err != nil {
		return nil, err
	}
	return rv, nil
}
