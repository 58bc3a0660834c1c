package binding

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// The test vector of PROTOCOLS.md.
func TestCanonicalVector(t *testing.T) {
	canon, err := Canonical([]byte(`{"b":1,"a":"test","c":{"d":"e"}}`))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum384(canon)
	const want = "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("SHA-384 of JCS = %s, want %s (canonical form %s)", got, want, canon)
	}
}

func TestReportData(t *testing.T) {
	jwk := json.RawMessage(`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AA","y":"BB"}`)
	a, err := ReportData("bm9uY2U=", jwk, "")
	if err != nil {
		t.Fatal(err)
	}
	// Key order in the JWK must not matter: JCS sorts it.
	b, err := ReportData("bm9uY2U=", json.RawMessage(`{"y":"BB","x":"AA","alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC"}`), "")
	if err != nil || a != b {
		t.Fatalf("same key in another order gave another binding: %v", err)
	}
	c, _ := ReportData("b3RoZXI=", jwk, "")
	if a == c {
		t.Fatal("another nonce gave the same binding")
	}
	for _, z := range a[48:] {
		if z != 0 {
			t.Fatal("the last 16 bytes are not zero")
		}
	}
	if _, err := ReportData("n", json.RawMessage(`{not json`), ""); err == nil {
		t.Fatal("invalid JWK accepted")
	}
}
