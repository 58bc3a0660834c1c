package verifier

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/binding"
	"github.com/veil-runtime/veil/attestation/sim"
)

// The real samples verify offline against the vendors' roots, with the default configuration.
func TestRealSamples(t *testing.T) {
	v, err := New(Config{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	snpEv, snpRD := milanEvidence(t)
	tdxEv, tdxRD := sampleTDXEvidence(t)
	tests := []struct {
		name string
		in   Input
		want func(*Claims) error
	}{
		{name: "snp milan sample", in: Input{TEE: "snp", Evidence: snpEv, ReportData: snpRD}, want: func(c *Claims) error {
			if c.SNP.Signer != "VCEK" || c.SNP.ReportVersion != 2 || c.Raw["report_data"] != hex.EncodeToString(snpRD[:]) {
				return errors.New("unexpected SNP claims")
			}
			return nil
		}},
		{name: "tdx sample quote", in: Input{TEE: "tdx", Evidence: tdxEv, ReportData: tdxRD}, want: func(c *Claims) error {
			if c.Raw["mr_td"] != "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb" || c.TDX.FMSPC == "" {
				return errors.New("unexpected TDX claims")
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if c.Simulated || c.TEE != tc.in.TEE {
				t.Fatalf("claims = %+v", c)
			}
			if err := tc.want(c); err != nil {
				t.Fatalf("%v: %+v", err, c.Raw)
			}
		})
	}
}

func TestSimRoundTrip(t *testing.T) {
	a, b := simAuthority(t), otherAuthority(t)
	jwk := json.RawMessage(`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AA","y":"BB"}`)
	rd, err := binding.ReportData("bm9uY2U=", jwk, "")
	if err != nil {
		t.Fatal(err)
	}
	digest := initDigest(t)
	var host [32]byte
	copy(host[:], digest)
	var cfg [48]byte
	copy(cfg[:], digest)
	snpEv := simSNPEvidence(t, a, sim.SNPLaunch{HostData: host, Measurement: [48]byte{9}}, rd)
	tdxEv := simTDXEvidence(t, a, sim.TDXLaunch{MRConfigID: cfg, MRTD: [48]byte{8}}, rd)
	trusting := Config{Now: fixedNow, SimSNPRoots: a.SNPRoots(), SimTDXRoots: a.TDXRoots()}
	tests := []struct {
		name    string
		cfg     Config
		in      Input
		wantErr error
		wantMsg string
	}{
		{name: "snp trusted", cfg: trusting, in: Input{TEE: "snp", Evidence: snpEv, ReportData: rd, InitDataDigest: digest}},
		{name: "tdx trusted", cfg: trusting, in: Input{TEE: "tdx", Evidence: tdxEv, ReportData: rd, InitDataDigest: digest}},
		{name: "snp without sim root", cfg: Config{Now: fixedNow}, in: Input{TEE: "snp", Evidence: snpEv, ReportData: rd},
			wantErr: ErrUntrusted, wantMsg: "no sim root is configured"},
		{name: "tdx without sim root", cfg: Config{Now: fixedNow}, in: Input{TEE: "tdx", Evidence: tdxEv, ReportData: rd},
			wantErr: ErrUntrusted, wantMsg: "no sim root is configured"},
		{name: "snp other sim root", cfg: Config{Now: fixedNow, SimSNPRoots: b.SNPRoots()}, in: Input{TEE: "snp", Evidence: snpEv, ReportData: rd},
			wantErr: ErrUntrusted, wantMsg: "could not be verified by any trusted roots"},
		{name: "tdx other sim root", cfg: Config{Now: fixedNow, SimTDXRoots: b.TDXRoots()}, in: Input{TEE: "tdx", Evidence: tdxEv, ReportData: rd},
			wantErr: ErrUntrusted, wantMsg: "certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			c, err := v.Verify(context.Background(), tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want %v containing %q", err, tc.wantErr, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.Simulated || !c.InitDataChecked || c.Debug || string(c.ReportData) != string(rd[:]) {
				t.Fatalf("claims = %+v", c)
			}
			if c.Raw["simulated"] != true || c.Raw["init_data"] != hex.EncodeToString(c.HostData) {
				t.Fatalf("raw claims = %v", c.Raw)
			}
		})
	}
}

// Every refusal of trusted-root evidence, with the error kind and what it names.
func TestRefusals(t *testing.T) {
	a := simAuthority(t)
	digest := initDigest(t)
	rd := [64]byte{1, 2, 3}
	snpEv := simSNPEvidence(t, a, sim.SNPLaunch{HostData: [32]byte{0xAA}}, rd)
	tdxEv := simTDXEvidence(t, a, sim.TDXLaunch{MRConfigID: [48]byte{0xAA}}, rd)
	tests := []struct {
		name    string
		in      Input
		wantErr error
		wantMsg []string
	}{
		{name: "snp flipped measurement byte", in: Input{TEE: "snp", ReportData: rd,
			Evidence: editSNP(t, snpEv, func(r []byte) { r[0x90] ^= 1 })}, wantErr: ErrUntrusted, wantMsg: []string{"signature"}},
		{name: "snp flipped signature byte", in: Input{TEE: "snp", ReportData: rd,
			Evidence: editSNP(t, snpEv, func(r []byte) { r[0x2A0] ^= 1 })}, wantErr: ErrUntrusted, wantMsg: []string{"signature"}},
		{name: "tdx flipped MRTD byte", in: Input{TEE: "tdx", ReportData: rd,
			Evidence: editTDX(t, tdxEv, func(q []byte) { q[0x30+0x88] ^= 1 })}, wantErr: ErrUntrusted, wantMsg: []string{"signature"}},
		{name: "snp report_data mismatch", in: Input{TEE: "snp", Evidence: snpEv, ReportData: [64]byte{9}},
			wantErr: ErrMismatch, wantMsg: []string{"REPORT_DATA is 010203", "want 09"}},
		{name: "tdx report_data mismatch", in: Input{TEE: "tdx", Evidence: tdxEv, ReportData: [64]byte{9}},
			wantErr: ErrMismatch, wantMsg: []string{"REPORTDATA is 010203"}},
		{name: "snp host_data is not the initdata digest", in: Input{TEE: "snp", Evidence: snpEv, ReportData: rd, InitDataDigest: digest},
			wantErr: ErrMismatch, wantMsg: []string{"HOST_DATA (initdata digest) is aa00", "want " + hex.EncodeToString(digest)}},
		{name: "tdx mrconfigid is not the initdata digest", in: Input{TEE: "tdx", Evidence: tdxEv, ReportData: rd, InitDataDigest: digest},
			wantErr: ErrMismatch, wantMsg: []string{"MRCONFIGID (initdata digest) is aa00"}},
		{name: "both mismatch, both named", in: Input{TEE: "snp", Evidence: snpEv, ReportData: [64]byte{9}, InitDataDigest: digest},
			wantErr: ErrMismatch, wantMsg: []string{"REPORT_DATA", "HOST_DATA"}},
		{name: "unknown TEE", in: Input{TEE: "sgx", Evidence: snpEv}, wantErr: ErrUnknownTEE, wantMsg: []string{`"sgx"`}},
		{name: "sample TEE", in: Input{TEE: "sample", Evidence: json.RawMessage(`{}`)}, wantErr: ErrUnknownTEE},
		{name: "snp garbage", in: Input{TEE: "snp", Evidence: json.RawMessage(`{"attestation_report":"AAAA"}`)}, wantErr: ErrMalformed},
		{name: "tdx garbage", in: Input{TEE: "tdx", Evidence: json.RawMessage(`{"quote":"AAAA"}`)}, wantErr: ErrMalformed},
		{name: "snp evidence as tdx", in: Input{TEE: "tdx", Evidence: snpEv}, wantErr: ErrMalformed},
	}
	// Once with a cold verifier without a chain cache, once with the cache warmed by the good
	// evidence: tampered copies must fail both ways.
	for _, cache := range []int{-1, 0} {
		v, err := New(Config{Now: fixedNow, SimSNPRoots: a.SNPRoots(), SimTDXRoots: a.TDXRoots(), ChainCacheSize: cache})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range []Input{{TEE: "snp", Evidence: snpEv, ReportData: rd}, {TEE: "tdx", Evidence: tdxEv, ReportData: rd}} {
			if _, err := v.Verify(context.Background(), in); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/cache=%d", tc.name, cache), func(t *testing.T) {
				_, err := v.Verify(context.Background(), tc.in)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				for _, m := range tc.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("err = %v, want it to contain %q", err, m)
					}
				}
			})
		}
	}
}
