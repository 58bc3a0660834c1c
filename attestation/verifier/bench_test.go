package verifier

import (
	"context"
	"encoding/json"
	"testing"

	sevverify "github.com/google/go-sev-guest/verify"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/sim"
)

func benchVerify(b *testing.B, tee string, cache int) {
	a := simAuthority(b)
	rd := [64]byte{1}
	ev := simSNPEvidence(b, a, sim.SNPLaunch{}, rd)
	if tee == "tdx" {
		ev = simTDXEvidence(b, a, sim.TDXLaunch{}, rd)
	}
	v, err := New(Config{Now: fixedNow, SimSNPRoots: a.SNPRoots(), SimTDXRoots: a.TDXRoots(), ChainCacheSize: cache})
	if err != nil {
		b.Fatal(err)
	}
	in := Input{TEE: tee, Evidence: ev, ReportData: rd}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifySimSNP is one full verification of sim SNP evidence as the KBS does it for
// each attest request (the chain cache warm after the first).
func BenchmarkVerifySimSNP(b *testing.B) { benchVerify(b, "snp", 0) }

// BenchmarkVerifySimSNPNoCache verifies the whole chain every time.
func BenchmarkVerifySimSNPNoCache(b *testing.B) { benchVerify(b, "snp", -1) }

// BenchmarkVerifySimTDX and BenchmarkVerifySimTDXNoCache are the same for TDX quotes.
func BenchmarkVerifySimTDX(b *testing.B)        { benchVerify(b, "tdx", 0) }
func BenchmarkVerifySimTDXNoCache(b *testing.B) { benchVerify(b, "tdx", -1) }

// BenchmarkBareSNPSignatureChecks is the bare cryptography that SNP evidence needs: ECDSA P-384
// over the report (by the VCEK), and the chain: the VCEK by the ASK and the ASK by the ARK
// (RSA-4096 PSS), with already parsed certificates and no other work.
func BenchmarkBareSNPSignatureChecks(b *testing.B) {
	a := simAuthority(b)
	var ev evidence.SNP
	if err := json.Unmarshal(simSNPEvidence(b, a, sim.SNPLaunch{}, [64]byte{1}), &ev); err != nil {
		b.Fatal(err)
	}
	s := a.SNP
	b.ResetTimer()
	for b.Loop() {
		if err := sevverify.SnpReportSignature(ev.Report, s.VCEK); err != nil {
			b.Fatal(err)
		}
		if err := s.VCEK.CheckSignatureFrom(s.ASK); err != nil {
			b.Fatal(err)
		}
		if err := s.ASK.CheckSignatureFrom(s.ARK); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareSNPReportSignature is the report signature alone (ECDSA P-384).
func BenchmarkBareSNPReportSignature(b *testing.B) {
	a := simAuthority(b)
	var ev evidence.SNP
	if err := json.Unmarshal(simSNPEvidence(b, a, sim.SNPLaunch{}, [64]byte{1}), &ev); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := sevverify.SnpReportSignature(ev.Report, a.SNP.VCEK); err != nil {
			b.Fatal(err)
		}
	}
}
