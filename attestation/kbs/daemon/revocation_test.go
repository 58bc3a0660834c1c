package daemon

import (
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/sim"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// veil-kbs with check_revocations and a collateral directory: a sim guest whose VCEK is not on
// the Milan CRL gets its resource; once the CRL lists the VCEK, the same guest is refused.
func TestRevokedChipRefused(t *testing.T) {
	dir, refs, body, guest, auth := simGuest(t)
	collateral := filepath.Join(dir, "collateral")
	crlFile := filepath.Join(collateral, "vcek", "v1", "Milan", "crl")
	if err := os.MkdirAll(filepath.Dir(crlFile), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		revoked *big.Int
		wantErr string
	}{
		{name: "good chip", revoked: big.NewInt(42)},
		{name: "revoked VCEK", revoked: auth.SNP.VCEK.SerialNumber, wantErr: "VCEK (serial " + auth.SNP.VCEK.SerialNumber.Text(16) + ") was revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crl, err := auth.SNP.CRL(sim.CRLOptions{Revoked: []*big.Int{tc.revoked}})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(crlFile, crl, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := &Config{Data: filepath.Join(t.TempDir(), "data"), Attestation: AttestationConfig{
				ReferenceValues: refs, SimSNPRoots: filepath.Join(dir, sim.SNPRootsFile),
				CheckRevocations: true, CollateralDir: collateral,
			}}
			url := serve(t, cfg)
			p, _ := protocol.ParseResourcePath("default/key/1")
			if err := os.MkdirAll(filepath.Join(cfg.Data, "resources", "default", "key"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cfg.Data, "resources", p.Repository, p.Type, p.Tag), []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			cl, err := kbsclient.New(url, guest, kbsclient.Options{InitData: &protocol.InitData{Format: "toml", Body: body}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := cl.GetResource(t.Context(), p.URI())
			if tc.wantErr == "" && (err != nil || string(got) != "secret") {
				t.Fatalf("GetResource = %q, %v", got, err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("GetResource of a revoked chip = %q, %v; want %q", got, err, tc.wantErr)
			}
		})
	}
}

func TestRevocationFlags(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseFlags("veil-kbs", []string{"--data", dir, "--check-revocations", "--collateral-dir", dir})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Attestation.CheckRevocations || cfg.Attestation.CollateralDir != dir || cfg.Attestation.FetchCollateral {
		t.Fatalf("attestation config %+v", cfg.Attestation)
	}
	file := filepath.Join(dir, "kbs.toml")
	if err := os.WriteFile(file, []byte("[attestation]\ncheck_revocations = true\nfetch_collateral = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = ParseFlags("veil-kbs", []string{"--config", file, "--data", dir}); err != nil || !cfg.Attestation.CheckRevocations {
		t.Fatalf("config file: %+v, %v", cfg, err)
	}
	for args, want := range map[string]string{
		"--check-revocations":               "needs collateral-dir or fetch-collateral",
		"--collateral-dir=/nonexistent/kds": "nonexistent",
	} {
		if _, err := ParseFlags("veil-kbs", append([]string{"--data", dir}, strings.Fields(args)...)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", args, err, want)
		}
	}
	// The default checks no revocation.
	if cfg, err = ParseFlags("veil-kbs", []string{"--data", dir}); err != nil || cfg.Attestation.CheckRevocations || cfg.Attestation.CollateralDir != "" {
		t.Fatalf("default: %+v, %v", cfg, err)
	}
}
