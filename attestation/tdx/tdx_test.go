package tdx

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tdx-guest/testing/testdata"
	tdxverify "github.com/google/go-tdx-guest/verify"
)

func TestSampleQuote(t *testing.T) {
	q, err := ParseQuote(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := PCKChain(q)
	if err != nil {
		t.Fatal(err)
	}
	if chain[0].Subject.CommonName != "Intel SGX PCK Certificate" || chain[2].Subject.CommonName != "Intel SGX Root CA" {
		t.Fatalf("chain = %v, %v", chain[0].Subject, chain[2].Subject)
	}
	if !chain[2].Equal(mustRoot(t)) {
		t.Fatal("the sample's root is not the embedded Intel root")
	}
	opts := &tdxverify.Options{TrustedRoots: DefaultRoots(), Now: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	if err := tdxverify.TdxQuote(q, opts); err != nil {
		t.Fatal(err)
	}
}

func mustRoot(t *testing.T) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(IntelRootPEM())
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseQuoteErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{name: "empty", in: nil, wantErr: "tdx quote"},
		{name: "truncated", in: testdata.RawQuote[:0x400], wantErr: "tdx quote"},
		{name: "bad auth data size", in: func() []byte {
			q := bytes.Clone(testdata.RawQuote)
			q[0x4C2], q[0x4C3] = 0xFF, 0xFF // QE auth data size past the end
			return q
		}(), wantErr: "tdx quote"},
		{name: "not tdx", in: func() []byte { q := bytes.Clone(testdata.RawQuote); q[4] = 0; return q }(), wantErr: "TEE type is not TDX"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseQuote(tc.in); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := ParseRoots([]byte("nothing")); err == nil {
		t.Error("empty root bundle accepted")
	}
}

// FuzzParseQuote: go-tdx-guest's parser behind ParseQuote never panics the caller.
func FuzzParseQuote(f *testing.F) {
	f.Add(testdata.RawQuote)
	f.Add(testdata.RawQuote[:0x3FC])
	f.Fuzz(func(t *testing.T, data []byte) {
		if q, err := ParseQuote(data); err == nil {
			_, _ = PCKChain(q)
		}
	})
}
