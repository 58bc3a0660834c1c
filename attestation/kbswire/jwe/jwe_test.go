package jwe

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 3394 section 4.6: 256 bits of key data with a 256-bit KEK.
func TestKeyWrapVector(t *testing.T) {
	kek := mustHex(t, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	key := mustHex(t, "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	want := mustHex(t, "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
	got, err := keyWrap(kek, key)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("keyWrap = %X, %v; want %X", got, err, want)
	}
	back, err := keyUnwrap(kek, got)
	if err != nil || !bytes.Equal(back, key) {
		t.Fatalf("keyUnwrap = %X, %v", back, err)
	}
	got[3] ^= 1
	if _, err := keyUnwrap(kek, got); err == nil {
		t.Fatal("a corrupted wrapped key unwrapped")
	}
}

type keyPair struct {
	name string
	priv crypto.Signer
}

func testKeys(t *testing.T) []keyPair {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return []keyPair{{"EC P-256", ec}, {"RSA 2048", rk}}
}

// The KBS path: the public key travels as a JWK, the server parses it and encrypts; the
// client decrypts with its own code and go-jose decrypts too.
func TestRoundTrip(t *testing.T) {
	secret := []byte("the resource \x00 bytes")
	for _, kp := range testKeys(t) {
		t.Run(kp.name, func(t *testing.T) {
			jwk, err := PublicJWK(kp.priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParsePublicJWK(jwk)
			if err != nil {
				t.Fatal(err)
			}
			j, err := Encrypt(pub, secret)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decrypt(kp.priv, j)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("Decrypt = %q, %v", got, err)
			}
			raw, _ := json.Marshal(j)
			obj, err := jose.ParseEncryptedJSON(string(raw),
				[]jose.KeyAlgorithm{jose.ECDH_ES_A256KW, jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
			if err != nil {
				t.Fatalf("go-jose cannot parse: %v", err)
			}
			got, err = obj.Decrypt(kp.priv)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("go-jose Decrypt = %q, %v", got, err)
			}
		})
	}
}

// go-jose encrypts, Veil decrypts: checks the KDF and key wrap against an independent side.
func TestDecryptGoJose(t *testing.T) {
	for _, kp := range testKeys(t) {
		t.Run(kp.name, func(t *testing.T) {
			alg := jose.ECDH_ES_A256KW
			if _, ok := kp.priv.(*rsa.PrivateKey); ok {
				alg = jose.RSA_OAEP_256
			}
			enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: alg, Key: kp.priv.Public()}, nil)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := enc.Encrypt([]byte("from go-jose"))
			if err != nil {
				t.Fatal(err)
			}
			var j JWE
			if err := json.Unmarshal([]byte(obj.FullSerialize()), &j); err != nil {
				t.Fatal(err)
			}
			got, err := Decrypt(kp.priv, &j)
			if err != nil || string(got) != "from go-jose" {
				t.Fatalf("Decrypt = %q, %v", got, err)
			}
		})
	}
}

// The header bytes must be exactly those of the reference implementation.
func TestHeaderOrder(t *testing.T) {
	keys := testKeys(t)
	tests := []struct {
		name   string
		key    crypto.PublicKey
		prefix string
		suffix string
	}{
		{"EC", keys[0].priv.Public(), `{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":"`, `"}}`},
		{"RSA", keys[1].priv.Public(), `{"alg":"RSA-OAEP-256","enc":"A256GCM"}`, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Encrypt(tt.key, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			h, err := b64.DecodeString(j.Protected)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(h), tt.prefix) || !strings.HasSuffix(string(h), tt.suffix) {
				t.Fatalf("header %s", h)
			}
			if tt.name == "EC" && !strings.Contains(string(h), `","y":"`) {
				t.Fatalf("header %s has no y after x", h)
			}
			// Re-serialising the parsed header (as the Rust client does) gives the same bytes.
			var hdr Header
			if err := json.Unmarshal(h, &hdr); err != nil {
				t.Fatal(err)
			}
			if hdr.EPK != nil {
				re := `{"alg":"` + hdr.Alg + `","enc":"` + hdr.Enc + `","epk":{"crv":"` + hdr.EPK.Crv + `","kty":"` + hdr.EPK.Kty + `","x":"` + hdr.EPK.X + `","y":"` + hdr.EPK.Y + `"}}`
				if re != string(h) {
					t.Fatalf("header %s, want %s", h, re)
				}
			}
		})
	}
}

func TestDecryptRefusals(t *testing.T) {
	keys := testKeys(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	j, err := Encrypt(keys[0].priv.Public(), []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string) string {
		b, _ := b64.DecodeString(s)
		b[len(b)-1] ^= 1
		return b64.EncodeToString(b)
	}
	tests := []struct {
		name    string
		key     crypto.PrivateKey
		mutate  func(JWE) JWE
		wantErr string
	}{
		{"wrong key", other, func(j JWE) JWE { return j }, "integrity"},
		{"RSA key for EC JWE", keys[1].priv, func(j JWE) JWE { return j }, "with an RSA key"},
		{"tampered ciphertext", keys[0].priv, func(j JWE) JWE { j.Ciphertext = flip(j.Ciphertext); return j }, "content"},
		{"tampered tag", keys[0].priv, func(j JWE) JWE { j.Tag = flip(j.Tag); return j }, "content"},
		{"tampered header", keys[0].priv, func(j JWE) JWE {
			h, _ := b64.DecodeString(j.Protected)
			j.Protected = b64.EncodeToString([]byte(strings.Replace(string(h), `"enc":"A256GCM",`, `"enc":"A256GCM","zip":"x",`, 1)))
			return j
		}, "content"},
		{"bad enc", keys[0].priv, func(j JWE) JWE {
			j.Protected = b64.EncodeToString([]byte(`{"alg":"ECDH-ES+A256KW","enc":"A128GCM"}`))
			return j
		}, "content encryption"},
		{"short IV", keys[0].priv, func(j JWE) JWE { j.IV = "AAAA"; return j }, "IV of"},
		{"not base64", keys[0].priv, func(j JWE) JWE { j.Tag = "!!"; return j }, "tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.mutate(*j)
			_, err := Decrypt(tt.key, &m)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Decrypt error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParsePublicJWK(t *testing.T) {
	keys := testKeys(t)
	ecJWK, _ := PublicJWK(keys[0].priv.Public())
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallJWK, _ := PublicJWK(small.Public())
	tests := []struct {
		name    string
		jwk     string
		wantErr string
	}{
		{"EC", string(ecJWK), ""},
		{"not JSON", `{`, "tee-pubkey"},
		{"oct", `{"kty":"oct","k":"AA"}`, "not supported"},
		{"P-384", strings.Replace(string(ecJWK), "P-256", "P-384", 1), "not supported"},
		{"EC wrong alg", strings.Replace(string(ecJWK), "ECDH-ES+A256KW", "ECDH-ES", 1), "not supported"},
		{"EC short x", `{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AA","y":"AA"}`, "want 32"},
		{"EC off curve", `{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"` + strings.Repeat("A", 43) + `","y":"` + strings.Repeat("A", 43) + `"}`, "EC point"},
		{"RSA1_5", strings.Replace(string(mustJWK(t, keys[1].priv.Public())), "RSA-OAEP-256", "RSA1_5", 1), "not supported"},
		{"RSA 1024", string(smallJWK), "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePublicJWK([]byte(tt.jwk))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ParsePublicJWK error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func mustJWK(t *testing.T, pub crypto.PublicKey) json.RawMessage {
	t.Helper()
	j, err := PublicJWK(pub)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func FuzzDecrypt(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	j, _ := Encrypt(key.Public(), []byte("seed"))
	raw, _ := json.Marshal(j)
	f.Add(raw)
	f.Fuzz(func(t *testing.T, data []byte) {
		var j JWE
		if json.Unmarshal(data, &j) != nil {
			return
		}
		_, _ = Decrypt(key, &j)
	})
}

func FuzzParsePublicJWK(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, _ := PublicJWK(key.Public())
	f.Add([]byte(jwk))
	f.Add([]byte(`{"kty":"RSA","alg":"RSA-OAEP-256","n":"AQAB","e":"AQAB"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParsePublicJWK(data)
	})
}
