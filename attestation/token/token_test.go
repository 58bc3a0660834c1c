package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/appraisal"
	"github.com/veil-runtime/veil/attestation/verifier"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func submod() Submod {
	c := &verifier.Claims{TEE: "snp", Raw: map[string]any{"report_data": "0102", "init_data": "aa", "measurement": "bb"}}
	r := &appraisal.Result{Status: appraisal.StatusAffirming, PolicyID: appraisal.DefaultPolicyID,
		TrustworthinessVector: map[string]int{"hardware": 2, "executables": 2}}
	return NewSubmod(c, r, Annotations{
		RuntimeData: map[string]any{"nonce": "bm9uY2U=", "tee-pubkey": json.RawMessage(`{"kty":"EC","crv":"P-256","x":"AA","y":"BB"}`)},
		InitData:    map[string]any{"version": "0.1.0"},
	})
}

func issuer(t *testing.T) *Issuer {
	t.Helper()
	i, err := GenerateIssuer(IssuerOptions{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestRoundTrip(t *testing.T) {
	i := issuer(t)
	tok, err := i.Issue(submod())
	if err != nil {
		t.Fatal(err)
	}
	head, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h map[string]any
	if err := json.Unmarshal(head, &h); err != nil || h["alg"] != "ES256" || h["jwk"] == nil || h["typ"] != "JWT" {
		t.Fatalf("header = %s (%v)", head, err)
	}
	for _, trusted := range []*ecdsa.PublicKey{nil, i.PublicKey()} {
		ear, err := VerifyWithOptions(tok, VerifyOptions{Trusted: trusted, Now: t0.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		cpu0 := ear.CPU0()
		if ear.Profile != Profile || ear.ExpiresAt-ear.IssuedAt != 300 || cpu0.Status != "affirming" ||
			cpu0.TrustworthinessVector["hardware"] != 2 || cpu0.AppraisalPolicyID != appraisal.DefaultPolicyID {
			t.Fatalf("ear = %+v", ear)
		}
		ae := cpu0.AnnotatedEvidence
		if ae["report_data"] != "0102" || ae["init_data"] != "aa" || ae["init_data_claims"] == nil {
			t.Fatalf("annotated evidence = %v", ae)
		}
		if pk, err := ear.TEEPubKey(); err != nil || !strings.Contains(string(pk), `"crv":"P-256"`) {
			t.Fatalf("tee-pubkey = %s, %v", pk, err)
		}
		sub := ear.Raw["submods"].(map[string]any)["cpu0"].(map[string]any)
		if sub["ear.status"] != "affirming" || ear.Raw["ear.verifier-id"].(map[string]any)["developer"] == "" {
			t.Fatalf("raw = %v", ear.Raw)
		}
	}
}

func TestVerifyRefusals(t *testing.T) {
	i := issuer(t)
	tok, err := i.Issue(submod())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "affirming", "warning!!", 1))) + "." + parts[2]
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[5] ^= 1
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
	reissued, _ := GenerateIssuer(IssuerOptions{Now: func() time.Time { return t0 }})
	byOther, _ := reissued.Issue(submod())
	tests := []struct {
		name    string
		token   string
		opts    VerifyOptions
		wantErr string
	}{
		{name: "tampered payload", token: forged, opts: VerifyOptions{Now: t0}, wantErr: "signature"},
		{name: "tampered signature", token: badSig, opts: VerifyOptions{Now: t0}, wantErr: "signature"},
		{name: "untrusted key", token: tok, opts: VerifyOptions{Trusted: &other.PublicKey, Now: t0}, wantErr: "signature"},
		{name: "another issuer's token", token: byOther, opts: VerifyOptions{Trusted: i.PublicKey(), Now: t0}, wantErr: "signature"},
		{name: "expired", token: tok, opts: VerifyOptions{Now: t0.Add(6 * time.Minute)}, wantErr: "expired at 2026-06-01T12:05:00Z"},
		{name: "from the future", token: tok, opts: VerifyOptions{Now: t0.Add(-time.Hour)}, wantErr: "issued in the future"},
		{name: "alg none", token: noneAlg, opts: VerifyOptions{Now: t0}, wantErr: "token:"},
		{name: "garbage", token: "a.b.c", opts: VerifyOptions{Now: t0}, wantErr: "token:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ear, err := VerifyWithOptions(tc.token, tc.opts)
			if err == nil || ear != nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ear = %v, err = %v, want %q", ear, err, tc.wantErr)
			}
		})
	}
}

func TestIssuerKeys(t *testing.T) {
	i := issuer(t)
	pemKey, err := i.PrivateKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	j, err := LoadIssuerPEM(pemKey, IssuerOptions{TTL: time.Minute})
	if err != nil || !j.PublicKey().Equal(i.PublicKey()) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{name: "no PEM", err: func() error { _, err := LoadIssuerPEM([]byte("x"), IssuerOptions{}); return err }(), wantErr: "no PEM block"},
		{name: "P-384", err: func() error { _, err := NewIssuer(p384, IssuerOptions{}); return err }(), wantErr: "must be ECDSA P-256"},
		{name: "no status", err: func() error { _, err := i.Issue(Submod{}); return err }(), wantErr: "no status"},
	}
	for _, tc := range tests {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want %q", tc.name, tc.err, tc.wantErr)
		}
	}
}
