package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/builtin"
	"github.com/veil-runtime/veil/attestation/snp"
	"github.com/veil-runtime/veil/attestation/tdx"
	"github.com/veil-runtime/veil/attestation/token"
	"github.com/veil-runtime/veil/attestation/verifier"
)

// newAttestation builds the built-in attestation service from the configuration, writing the
// default appraisal policy and empty reference values on first start.
func newAttestation(ctx context.Context, cfg *Config, lay Layout) (*builtin.Service, error) {
	a := cfg.Attestation
	v, err := newVerifier(ctx, a)
	if err != nil {
		return nil, err
	}
	refFile, err := fileOrDefault(ctx, a.ReferenceValues, lay.ReferenceValues, []byte("{}\n"))
	if err != nil {
		return nil, err
	}
	ref, err := appraisal.LoadReferenceValues(refFile)
	if err != nil {
		return nil, err
	}
	policyFile, err := fileOrDefault(ctx, a.Policy, lay.AttestationPolicy, []byte(appraisal.DefaultPolicy))
	if err != nil {
		return nil, err
	}
	policy, err := os.ReadFile(policyFile)
	if err != nil {
		return nil, fmt.Errorf("attestation policy: %w", err)
	}
	ap, err := builtin.NewAppraiser(ctx, string(policy), ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", policyFile, err)
	}
	if lay.TokenKeyConfigured {
		if err := kbs.CheckKeyFileMode("token key file", lay.TokenKey); err != nil {
			return nil, err
		}
	}
	key, err := os.ReadFile(lay.TokenKey)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	iss, err := token.LoadIssuerPEM(key, token.IssuerOptions{TTL: a.TokenTTL.Duration})
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", lay.TokenKey, err)
	}
	log.G(ctx).WithFields(log.Fields{"reference_values": refFile, "attestation_policy": policyFile}).
		Info("veil-kbs: appraisal")
	return builtin.New(builtin.Options{Verifier: v, Appraiser: ap, Issuer: iss, Reference: ref, PolicyFile: policyFile})
}

// fileOrDefault returns configured when set (it must exist), else def, written with content
// when it does not exist yet.
func fileOrDefault(ctx context.Context, configured, def string, content []byte) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if _, err := os.Stat(def); err == nil {
		return def, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("data directory: %w", err)
	}
	if err := writeAtomic(def, content); err != nil {
		return "", err
	}
	log.G(ctx).WithField("file", def).Info("veil-kbs: created on first start")
	return def, nil
}

func writeAtomic(file string, data []byte) error {
	// A temporary name of its own: replicas sharing a data volume may write the same
	// default at their first start.
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// newVerifier reads the trusted roots. Sim roots are trusted only when configured, and say so.
func newVerifier(ctx context.Context, a AttestationConfig) (verifier.Verifier, error) {
	vc := verifier.Config{FetchCollateral: a.FetchCollateral, CheckRevocations: a.CheckRevocations, CollateralDir: a.CollateralDir}
	var errs []error
	if a.SNPRoots != "" {
		vc.SNPRoots, errs = parseFile(a.SNPRoots, snp.ParseRoots, errs)
	}
	if a.TDXRoots != "" {
		vc.TDXRoots, errs = parseFile(a.TDXRoots, tdx.ParseRoots, errs)
	}
	if a.SimSNPRoots != "" {
		vc.SimSNPRoots, errs = parseFile(a.SimSNPRoots, snp.ParseRoots, errs)
		log.G(ctx).WithField("roots", a.SimSNPRoots).Warn("veil-kbs: trusting SIMULATED SNP evidence (development and CI only)")
	}
	if a.SimTDXRoots != "" {
		vc.SimTDXRoots, errs = parseFile(a.SimTDXRoots, tdx.ParseRoots, errs)
		log.G(ctx).WithField("roots", a.SimTDXRoots).Warn("veil-kbs: trusting SIMULATED TDX evidence (development and CI only)")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	v, err := verifier.New(vc)
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	return v, nil
}

func parseFile[T any](file string, parse func([]byte) (T, error), errs []error) (T, []error) {
	var zero T
	data, err := os.ReadFile(file)
	if err != nil {
		return zero, append(errs, fmt.Errorf("roots: %w", err))
	}
	v, err := parse(data)
	if err != nil {
		return zero, append(errs, fmt.Errorf("roots %s: %w", file, err))
	}
	return v, errs
}
