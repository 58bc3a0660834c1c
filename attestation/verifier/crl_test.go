package verifier

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-sev-guest/verify/trust"

	"github.com/veil-runtime/veil/attestation/sim"
)

const milanCRLPath = "vcek/v1/Milan/crl"

// crlDir writes crl as the Milan VCEK CRL of a new collateral directory.
func crlDir(t *testing.T, crl []byte) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, filepath.FromSlash(milanCRLPath))
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, crl, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func simCRL(t *testing.T, a *sim.Authority, o sim.CRLOptions) []byte {
	t.Helper()
	der, err := a.SNP.CRL(o)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// crlSignedByOtherKey is a CRL naming ark as its issuer but signed by another RSA key.
func crlSignedByOtherKey(t *testing.T, ark *x509.Certificate, thisUpdate time.Time) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	impostor := *ark
	impostor.PublicKey = &key.PublicKey
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		SignatureAlgorithm: x509.SHA384WithRSAPSS, Number: big.NewInt(1),
		ThisUpdate: thisUpdate, NextUpdate: thisUpdate.AddDate(0, 0, 7),
	}, &impostor, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestSNPRevocationOffline(t *testing.T) {
	a, b := simAuthority(t), otherAuthority(t)
	var rd [64]byte
	rd[0] = 7
	ev := simSNPEvidence(t, a, sim.SNPLaunch{}, rd)
	in := Input{TEE: "snp", Evidence: ev, ReportData: rd}
	vcekSerial := a.SNP.VCEK.SerialNumber
	otherSerial := big.NewInt(12345)
	tests := []struct {
		name  string
		crl   []byte // nil: no CRL file
		want  []string
		isErr error
	}{
		{name: "good chip", crl: simCRL(t, a, sim.CRLOptions{Revoked: []*big.Int{otherSerial}})},
		{name: "empty CRL", crl: simCRL(t, a, sim.CRLOptions{})},
		{name: "revoked VCEK", crl: simCRL(t, a, sim.CRLOptions{Revoked: []*big.Int{otherSerial, vcekSerial}}),
			want: []string{"VCEK (serial " + vcekSerial.Text(16) + ") was revoked", milanCRLPath}, isErr: ErrRevoked},
		{name: "revoked ASK", crl: simCRL(t, a, sim.CRLOptions{Revoked: []*big.Int{a.SNP.ASK.SerialNumber}}),
			want: []string{"ASK (serial " + a.SNP.ASK.SerialNumber.Text(16) + ") was revoked"}, isErr: ErrRevoked},
		{name: "CRL signed by another key", crl: crlSignedByOtherKey(t, a.SNP.ARK, sampleTime.Add(-time.Hour)),
			want: []string{"is not signed by the trusted ARK-Milan", milanCRLPath}, isErr: ErrUntrusted},
		{name: "CRL of another ARK", crl: simCRL(t, b, sim.CRLOptions{}),
			want: []string{"ARK-Genoa", "not by the trusted", "ARK-Milan"}, isErr: ErrUntrusted},
		{name: "stale CRL", crl: simCRL(t, a, sim.CRLOptions{ThisUpdate: sampleTime.AddDate(0, 0, -10), NextUpdate: sampleTime.AddDate(0, 0, -3)}),
			want: []string{"is stale", "nextUpdate 2026-05-29T00:00:00Z is before now (2026-06-01T00:00:00Z)"}, isErr: ErrUntrusted},
		{name: "CRL from the future", crl: simCRL(t, a, sim.CRLOptions{ThisUpdate: sampleTime.Add(time.Hour)}),
			want: []string{"not valid yet"}, isErr: ErrUntrusted},
		{name: "not a CRL", crl: []byte("<html>rate limited</html>"), want: []string{milanCRLPath}, isErr: ErrUntrusted},
		{name: "no CRL", want: []string{"no CRL for https://kdsintf.amd.com/vcek/v1/Milan/crl in the collateral directory"}, isErr: ErrUntrusted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.crl != nil {
				dir = crlDir(t, tc.crl)
			}
			v, err := New(Config{SimSNPRoots: a.SNPRoots(), Now: fixedNow, CheckRevocations: true, CollateralDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.Verify(context.Background(), in)
			if tc.isErr == nil {
				if err != nil || !c.Simulated {
					t.Fatalf("Verify = %+v, %v; want the chip accepted", c, err)
				}
				return
			}
			if !errors.Is(err, tc.isErr) || !errors.Is(err, ErrUntrusted) {
				t.Fatalf("Verify error = %v; want %v", err, tc.isErr)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// The default checks no CRL: a revoked chip is accepted. This documents the default.
func TestSNPRevocationOffByDefault(t *testing.T) {
	a := simAuthority(t)
	dir := crlDir(t, simCRL(t, a, sim.CRLOptions{Revoked: []*big.Int{a.SNP.VCEK.SerialNumber}}))
	v, err := New(Config{SimSNPRoots: a.SNPRoots(), Now: fixedNow, CollateralDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	if _, err := v.Verify(context.Background(), Input{TEE: "snp", Evidence: simSNPEvidence(t, a, sim.SNPLaunch{}, rd), ReportData: rd}); err != nil {
		t.Fatalf("revoked chip refused without CheckRevocations: %v", err)
	}
}

// AMD's real Milan chain: a CRL that names AMD's ARK-Milan but is not signed by its key is
// refused; so is none at all.
func TestSNPRevocationRealMilanChain(t *testing.T) {
	ev, rd := milanEvidence(t)
	ark := trust.DefaultRootCerts["Milan"].ProductCerts.Ark
	for name, dir := range map[string]string{
		"forged CRL": crlDir(t, crlSignedByOtherKey(t, ark, sampleTime.Add(-time.Hour))),
		"no CRL":     t.TempDir(),
	} {
		t.Run(name, func(t *testing.T) {
			v, err := New(Config{Now: fixedNow, CheckRevocations: true, CollateralDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), Input{TEE: "snp", Evidence: ev, ReportData: rd})
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "revocation check") {
				t.Fatalf("Verify error = %v; want a failed revocation check", err)
			}
		})
	}
}

// countingGetter serves a CRL at url and the sim cert_chain, and counts the CRL requests.
type countingGetter struct {
	url       string
	body      []byte
	certChain []byte
	n         atomic.Int32
}

func (g *countingGetter) Get(_ context.Context, url string) (http.Header, []byte, error) {
	switch url {
	case g.url:
		g.n.Add(1)
		return nil, g.body, nil
	case strings.TrimSuffix(g.url, "crl") + "cert_chain":
		return nil, g.certChain, nil
	}
	return nil, nil, errors.New("GET " + url + ": 404 Not Found")
}

// Online, the CRL comes from KDS's URL, once until its nextUpdate; a collateral directory
// takes precedence, and a file missing from it falls back to KDS.
func TestSNPRevocationOnline(t *testing.T) {
	a := simAuthority(t)
	var rd [64]byte
	in := Input{TEE: "snp", Evidence: simSNPEvidence(t, a, sim.SNPLaunch{}, rd), ReportData: rd}
	revoked := simCRL(t, a, sim.CRLOptions{Revoked: []*big.Int{a.SNP.VCEK.SerialNumber}})
	good := simCRL(t, a, sim.CRLOptions{})
	now := sampleTime
	clock := func() time.Time { return now }

	g := &countingGetter{url: "https://kdsintf.amd.com/vcek/v1/Milan/crl", body: good, certChain: a.SNPRootsPEM()}
	v, err := New(Config{SimSNPRoots: a.SNPRoots(), Now: clock, CheckRevocations: true, FetchCollateral: true, Getter: g})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	if g.n.Load() != 1 {
		t.Fatalf("%d CRL fetches for two verifications, want 1 (cached until nextUpdate)", g.n.Load())
	}
	// Past nextUpdate the CRL is fetched again: KDS now lists the VCEK.
	now = sampleTime.AddDate(0, 0, 8)
	g.body = simCRL(t, a, sim.CRLOptions{ThisUpdate: sampleTime.AddDate(0, 0, 7), Revoked: []*big.Int{a.SNP.VCEK.SerialNumber}})
	if _, err := v.Verify(context.Background(), in); !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), g.url) {
		t.Fatalf("Verify after KDS revoked the VCEK = %v", err)
	}

	// The directory's CRL wins over KDS's.
	now = sampleTime
	g.body = good
	v, err = New(Config{SimSNPRoots: a.SNPRoots(), Now: clock, CheckRevocations: true, FetchCollateral: true, Getter: g, CollateralDir: crlDir(t, revoked)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), in); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Verify = %v; want the directory's CRL to revoke the VCEK", err)
	}
	// An empty directory falls back to KDS.
	v, err = New(Config{SimSNPRoots: a.SNPRoots(), Now: clock, CheckRevocations: true, FetchCollateral: true, Getter: g, CollateralDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), in); err != nil {
		t.Fatalf("Verify with the CRL from KDS: %v", err)
	}
}

func TestRevocationConfig(t *testing.T) {
	if _, err := New(Config{CheckRevocations: true}); err == nil || !strings.Contains(err.Error(), "CollateralDir") {
		t.Fatalf("New(CheckRevocations without a CRL source) = %v", err)
	}
	if _, err := New(Config{CollateralDir: filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("New(missing CollateralDir) = %v", err)
	}
	// TDX with a collateral directory takes Intel PCS collateral from it: none there is an error
	// naming the file.
	v, err := New(Config{CheckRevocations: true, CollateralDir: t.TempDir(), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	ev, rd := sampleTDXEvidence(t)
	if _, err := v.Verify(context.Background(), Input{TEE: "tdx", Evidence: ev, ReportData: rd}); err == nil ||
		!strings.Contains(err.Error(), "tdx/certification/v4/tcb?fmspc=50806f000000: no such file") {
		t.Fatalf("TDX with an empty collateral directory = %v", err)
	}
}
