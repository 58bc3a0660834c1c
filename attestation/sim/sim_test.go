package sim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/validate"
	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	tdxverify "github.com/google/go-tdx-guest/verify"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/snp"
	"github.com/veil-runtime/veil/attestation/tdx"
)

var (
	authOnce sync.Once
	auth     *sim.Authority
	authErr  error
)

func authority(t testing.TB) *sim.Authority {
	t.Helper()
	authOnce.Do(func() { auth, authErr = sim.NewAuthority(rand.Reader, sim.Options{}) })
	if authErr != nil {
		t.Fatal(authErr)
	}
	return auth
}

func TestSNPWithGoSevGuest(t *testing.T) {
	a := authority(t)
	att, err := sim.NewSNPAttester(a, sim.SNPLaunch{HostData: [32]byte{1}, Measurement: [48]byte{2}})
	if err != nil {
		t.Fatal(err)
	}
	js, err := att.Evidence(context.Background(), [64]byte{3})
	if err != nil {
		t.Fatal(err)
	}
	var ev evidence.SNP
	if err := json.Unmarshal(js, &ev); err != nil {
		t.Fatal(err)
	}
	pb, err := snp.Attestation(&ev)
	if err != nil {
		t.Fatal(err)
	}
	opts := &sevverify.Options{TrustedRoots: a.SNPRoots().TrustedRoots(), DisableCertFetching: true, Now: time.Now()}
	if err := sevverify.SnpAttestation(pb, opts); err != nil {
		t.Fatalf("sim report does not verify against the sim roots: %v", err)
	}
	if err := validate.SnpAttestation(pb, &validate.Options{ReportData: make([]byte, 64)}); err == nil {
		t.Fatal("wrong report data validated")
	}
	opts = &sevverify.Options{TrustedRoots: snp.DefaultRoots().TrustedRoots(), DisableCertFetching: true}
	if err := sevverify.SnpAttestation(pb, opts); err == nil {
		t.Fatal("sim report verified against AMD's roots")
	}
}

func TestTDXWithGoTdxGuest(t *testing.T) {
	a := authority(t)
	q, err := a.TDX.Quote(sim.TDXLaunch{MRConfigID: [48]byte{1}}, [64]byte{3})
	if err != nil {
		t.Fatal(err)
	}
	if err := tdxverify.RawTdxQuote(q, &tdxverify.Options{TrustedRoots: a.TDXRoots(), Now: time.Now()}); err != nil {
		t.Fatalf("sim quote does not verify against the sim root: %v", err)
	}
	if err := tdxverify.RawTdxQuote(q, &tdxverify.Options{TrustedRoots: tdx.DefaultRoots(), Now: time.Now()}); err == nil {
		t.Fatal("sim quote verified against Intel's root")
	}
}

func TestAuthorityFiles(t *testing.T) {
	a := authority(t)
	dir := t.TempDir()
	if err := a.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	b, err := sim.LoadAuthority(filepath.Join(dir, sim.AuthorityFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, sim.AuthorityFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("authority file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	if b.SNP.ProductLine != "Milan" || b.SNP.TCB() != sim.DefaultTCB || !b.TDX.PCK.Equal(a.TDX.PCK) {
		t.Fatalf("reloaded authority differs: %+v", b.SNP)
	}
	// A report signed by the reloaded authority verifies against the roots written to disk.
	rootsPEM, err := os.ReadFile(filepath.Join(dir, sim.SNPRootsFile))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := snp.ParseRoots(rootsPEM)
	if err != nil {
		t.Fatal(err)
	}
	report, err := b.SNP.Report(sim.SNPLaunch{}, [64]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := snp.Attestation(&evidence.SNP{Report: report, CertChain: b.SNP.CertChain()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sevverify.SnpAttestation(pb, &sevverify.Options{TrustedRoots: roots.TrustedRoots(), DisableCertFetching: true}); err != nil {
		t.Fatal(err)
	}
	tdxRoot, err := os.ReadFile(filepath.Join(dir, sim.TDXRootFile))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := tdx.ParseRoots(tdxRoot)
	if err != nil {
		t.Fatal(err)
	}
	q, err := b.TDX.Quote(sim.TDXLaunch{}, [64]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	if err := tdxverify.RawTdxQuote(q, &tdxverify.Options{TrustedRoots: pool}); err != nil {
		t.Fatal(err)
	}
}

func TestParseAuthorityErrors(t *testing.T) {
	a := authority(t)
	full, err := a.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	var noVCEKKey []byte
	for rest := full; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "PRIVATE KEY" && block.Headers["Role"] == "snp-vcek" {
			continue
		}
		noVCEKKey = append(noVCEKKey, pem.EncodeToMemory(block)...)
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{name: "empty", in: nil, wantErr: "no snp-ark certificate"},
		{name: "missing key", in: noVCEKKey, wantErr: "no snp-vcek private key"},
		{name: "real AMD roots are not an authority", in: trust.AskArkMilanVcekBytes, wantErr: "no snp-vcek certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sim.ParseAuthority(tc.in); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// Simulated evidence says so: the chain's subjects, CHIP_ID, and the TDX quote header.
func TestMarkers(t *testing.T) {
	a := authority(t)
	for name, c := range map[string]*x509.Certificate{"ARK": a.SNP.ARK, "ASK": a.SNP.ASK, "VCEK": a.SNP.VCEK,
		"TDX root": a.TDX.Root, "TDX intermediate": a.TDX.Intermediate, "PCK": a.TDX.PCK} {
		if !sim.IsSimulatedCert(c) || !bytes.Contains(c.RawSubject, []byte(sim.Marker)) {
			t.Errorf("%s is not marked: %s", name, c.Subject)
		}
	}
	real := snp.DefaultRoots().TrustedRoots()["Milan"][0].ProductCerts
	if sim.IsSimulatedCert(real.Ark) || sim.IsSimulatedCert(real.Ask) {
		t.Error("AMD's Milan roots are marked simulated")
	}
	report, err := a.SNP.Report(sim.SNPLaunch{}, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	chip := sim.ChipID()
	if !bytes.Equal(report[0x1A0:0x1E0], chip[:]) || !bytes.HasPrefix(chip[:], []byte(sim.Marker)) {
		t.Errorf("CHIP_ID = %q", report[0x1A0:0x1E0])
	}
	q, err := a.TDX.Quote(sim.TDXLaunch{}, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(q[0x1C:0x30], sim.TDXUserData[:]) {
		t.Errorf("quote user data = %q", q[0x1C:0x30])
	}
}

func TestLaunchAndOptions(t *testing.T) {
	a := authority(t)
	report, err := a.SNP.Report(sim.SNPLaunch{}, [64]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if policy := binary.LittleEndian.Uint64(report[8:]); policy != sim.DefaultSNPPolicy || policy&sim.PolicyDebug != 0 {
		t.Errorf("default policy = %#x, want %#x without debug", policy, sim.DefaultSNPPolicy)
	}
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{name: "reserved policy bit clear", err: func() error { _, err := a.SNP.Report(sim.SNPLaunch{Policy: sim.PolicySMT}, [64]byte{}); return err }(),
			wantErr: "policy[17] is reserved"},
		{name: "turin", err: func() error { _, err := sim.NewAuthority(rand.Reader, sim.Options{ProductLine: "Turin"}); return err }(),
			wantErr: `product line "Turin" is not simulated`},
		{name: "no authority", err: func() error { _, err := sim.NewSNPAttester(nil, sim.SNPLaunch{}); return err }(),
			wantErr: "no SNP authority"},
	}
	for _, tc := range tests {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want %q", tc.name, tc.err, tc.wantErr)
		}
	}
	att, err := sim.NewTDXAttester(a, sim.TDXLaunch{})
	if err != nil || att.TEE() != "tdx" {
		t.Fatalf("tdx attester: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := att.Evidence(ctx, [64]byte{}); !errors.Is(err, context.Canceled) {
		t.Errorf("evidence with a cancelled context: %v", err)
	}
}
