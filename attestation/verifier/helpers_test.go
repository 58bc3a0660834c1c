package verifier

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/verify/testdata"
	tdxtestdata "github.com/google/go-tdx-guest/testing/testdata"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/layout"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/tdx"
	"github.com/veil-runtime/veil/initdata"
)

// A fixed time inside the validity of go-sev-guest's sample VCEK and go-tdx-guest's sample
// PCK certificate (both until 2029).
var sampleTime = time.Date(2026, time.June, 1, 0, 0, 0, 0, time.UTC)

type lazyAuthority struct {
	once sync.Once
	a    *sim.Authority
	err  error
	opts sim.Options
}

func (l *lazyAuthority) get(t testing.TB) *sim.Authority {
	t.Helper()
	l.once.Do(func() { l.a, l.err = sim.NewAuthority(rand.Reader, l.opts) })
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.a
}

// Two independent sim authorities, each generated once per test binary when first used; their
// certificates are valid from a day before sampleTime.
var (
	authorityA = &lazyAuthority{opts: sim.Options{Now: sampleTime.Add(-24 * time.Hour)}}
	authorityB = &lazyAuthority{opts: sim.Options{ProductLine: "Genoa", Now: sampleTime.Add(-24 * time.Hour)}}
)

func simAuthority(t testing.TB) *sim.Authority { return authorityA.get(t) }

func otherAuthority(t testing.TB) *sim.Authority { return authorityB.get(t) }

// initDigest is the digest of a sha256 initdata document, as the KBS computes it.
func initDigest(t testing.TB) []byte {
	t.Helper()
	doc, err := initdata.ParseFormat("toml", []byte("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"))
	if err != nil {
		t.Fatal(err)
	}
	return doc.Digest()
}

func simSNPEvidence(t testing.TB, a *sim.Authority, l sim.SNPLaunch, rd [64]byte) json.RawMessage {
	t.Helper()
	att, err := sim.NewSNPAttester(a, l)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := att.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func simTDXEvidence(t testing.TB, a *sim.Authority, l sim.TDXLaunch, rd [64]byte) json.RawMessage {
	t.Helper()
	att, err := sim.NewTDXAttester(a, l)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := att.Evidence(context.Background(), rd)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// milanEvidence is go-sev-guest's real Milan sample report with its VCEK, as SNP evidence.
func milanEvidence(t testing.TB) (json.RawMessage, [64]byte) {
	t.Helper()
	ev, err := json.Marshal(evidence.SNP{
		Report:    bytes.Clone(testdata.AttestationBytes[:layout.SNPReportSize]),
		CertChain: []evidence.CertTableEntry{{Type: evidence.CertVCEK, GUID: evidence.GUIDOfCertType(evidence.CertVCEK), Data: testdata.VcekBytes}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	copy(rd[:], []byte{1, 2, 3, 4, 5})
	return ev, rd
}

// sampleTDXEvidence is go-tdx-guest's real sample quote, as TDX evidence, with its REPORTDATA.
func sampleTDXEvidence(t testing.TB) (json.RawMessage, [64]byte) {
	t.Helper()
	q, err := tdx.ParseQuote(tdxtestdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	copy(rd[:], q.GetTdQuoteBody().GetReportData())
	ev, err := json.Marshal(evidence.TDX{Quote: tdxtestdata.RawQuote})
	if err != nil {
		t.Fatal(err)
	}
	return ev, rd
}

// editSNP decodes SNP evidence, lets edit change the raw report, and re-encodes it.
func editSNP(t testing.TB, ev json.RawMessage, edit func(report []byte)) json.RawMessage {
	t.Helper()
	var s evidence.SNP
	if err := json.Unmarshal(ev, &s); err != nil {
		t.Fatal(err)
	}
	edit(s.Report)
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// editTDX decodes TDX evidence, lets edit change the raw quote, and re-encodes it.
func editTDX(t testing.TB, ev json.RawMessage, edit func(quote []byte)) json.RawMessage {
	t.Helper()
	var q evidence.TDX
	if err := json.Unmarshal(ev, &q); err != nil {
		t.Fatal(err)
	}
	edit(q.Quote)
	out, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fixedNow() time.Time { return sampleTime }
