package verifier

import (
	"context"
	"crypto/rand"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/snp"
)

// The VLEK signer of authority A (an ASVK under A's ARK), made once per test binary.
var vlekSigner struct {
	once sync.Once
	s    *sim.SNPSigner
	err  error
}

func simVLEK(t testing.TB) *sim.SNPSigner {
	t.Helper()
	a := simAuthority(t)
	vlekSigner.once.Do(func() {
		vlekSigner.s, vlekSigner.err = a.SNP.VLEKSigner(rand.Reader, "veil-test-csp", sampleTime.Add(-24*time.Hour))
	})
	if vlekSigner.err != nil {
		t.Fatal(vlekSigner.err)
	}
	return vlekSigner.s
}

// A VLEK-signed report is checked against the VLEK CRL of its product line (KDS
// vlek/v1/<line>/crl): the VLEK and the ASVK must not be listed, the VCEK CRL does not do.
func TestSNPRevocationVLEK(t *testing.T) {
	a := simAuthority(t)
	vlek := simVLEK(t)
	roots, err := snp.ParseRoots(vlek.RootsPEM())
	if err != nil {
		t.Fatal(err)
	}
	rd := [64]byte{9}
	ev := simSNPEvidence(t, &sim.Authority{SNP: vlek, TDX: a.TDX}, sim.SNPLaunch{}, rd)
	in := Input{TEE: "snp", Evidence: ev, ReportData: rd}
	const vlekCRL = "vlek/v1/Milan/crl"
	tests := []struct {
		name  string
		path  string // where the CRL goes in the directory
		crl   sim.CRLOptions
		want  string
		isErr error
	}{
		{name: "good VLEK", path: vlekCRL, crl: sim.CRLOptions{Revoked: []*big.Int{big.NewInt(5), a.SNP.VCEK.SerialNumber}}},
		{name: "revoked VLEK", path: vlekCRL, crl: sim.CRLOptions{Revoked: []*big.Int{vlek.VCEK.SerialNumber}},
			want: "SEV-SNP VLEK (serial " + vlek.VCEK.SerialNumber.Text(16) + ") was revoked", isErr: ErrRevoked},
		{name: "revoked ASVK", path: vlekCRL, crl: sim.CRLOptions{Revoked: []*big.Int{vlek.ASK.SerialNumber}},
			want: "SEV-SNP ASVK (serial " + vlek.ASK.SerialNumber.Text(16) + ") was revoked", isErr: ErrRevoked},
		{name: "only the VCEK CRL", path: milanCRLPath, crl: sim.CRLOptions{},
			want: "no CRL for https://kdsintf.amd.com/vlek/v1/Milan/crl in the collateral directory", isErr: ErrUntrusted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, filepath.FromSlash(tc.path))
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, simCRL(t, a, tc.crl), 0o644); err != nil {
				t.Fatal(err)
			}
			v, err := New(Config{SimSNPRoots: roots, Now: fixedNow, CheckRevocations: true, CollateralDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.Verify(context.Background(), in)
			if tc.isErr == nil {
				if err != nil || c.Raw["signer"] != "VLEK" {
					t.Fatalf("Verify = %v (signer %v); want the VLEK accepted", err, c.Raw["signer"])
				}
				return
			}
			if !errors.Is(err, tc.isErr) || !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v; want %v saying %q", err, tc.isErr, tc.want)
			}
		})
	}
}
