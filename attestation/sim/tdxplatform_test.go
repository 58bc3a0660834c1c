package sim_test

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	tdxverify "github.com/google/go-tdx-guest/verify"

	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/tdx"
)

// Another platform of the same authority: its own PCK (serial, key) and attestation key under
// the same root and intermediate, the same SGX extension; its quotes verify with the sim root.
func TestTDXPlatform(t *testing.T) {
	a := authority(t)
	p, err := a.TDX.Platform(rand.Reader, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p.PCK.SerialNumber.Cmp(a.TDX.PCK.SerialNumber) == 0 || bytes.Equal(p.PCK.RawSubjectPublicKeyInfo, a.TDX.PCK.RawSubjectPublicKeyInfo) {
		t.Fatal("the new platform's PCK has the first platform's serial or key")
	}
	if p.Root != a.TDX.Root || p.Intermediate != a.TDX.Intermediate {
		t.Fatal("the new platform is under another chain")
	}
	q, err := p.Quote(sim.TDXLaunch{MRTD: [48]byte{2}}, [64]byte{4})
	if err != nil {
		t.Fatal(err)
	}
	if err := tdxverify.RawTdxQuote(q, &tdxverify.Options{TrustedRoots: a.TDXRoots(), Now: time.Now()}); err != nil {
		t.Fatalf("the new platform's quote does not verify against the sim root: %v", err)
	}
	parsed, err := tdx.ParseQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := tdx.PCKChain(parsed)
	if err != nil || !chain[0].Equal(p.PCK) {
		t.Fatalf("the quote's PCK is not the new platform's (%v)", err)
	}
	// The new platform matches the first one's collateral: same FMSPC, PCEID, TCB.
	i1, err := a.TDX.TCBInfo(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	i2, err := p.TCBInfo(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if i1.FMSPC != i2.FMSPC || i1.PCEID != i2.PCEID || i1.Levels[0].SGX != i2.Levels[0].SGX {
		t.Fatalf("TCB info of the new platform %+v differs from the first's %+v", i2, i1)
	}
	pemData, err := a.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := sim.ParseAuthority(pemData)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.TDX.Platform(rand.Reader, time.Now()); err == nil || !strings.Contains(err.Error(), "no CA keys") {
		t.Fatalf("Platform of a loaded authority = %v", err)
	}
}
