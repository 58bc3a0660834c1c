package sealed

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	kid      = "kbs:///default/sealed/key"
	vaultURI = "kbs:///default/secret/db"
	kekURI   = "kbs:///default/kek/one"
)

// fetcher is a map of resources; a missing one is an error naming it.
type fetcher map[string][]byte

func (f fetcher) GetResource(_ context.Context, uri string) ([]byte, error) {
	d, ok := f[uri]
	if !ok {
		return nil, fmt.Errorf("resource %s not found", uri)
	}
	return bytes.Clone(d), nil
}

type env struct {
	key *ecdsa.PrivateKey
	kek []byte
	f   fetcher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := PublicJWK(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	kek := make([]byte, 32)
	rand.Read(kek)
	return &env{key: key, kek: kek, f: fetcher{kid: pub, vaultURI: []byte("s3cr3t-db-password"), kekURI: kek}}
}

func (e *env) seal(t *testing.T, s *Secret) string {
	t.Helper()
	v, err := Seal(s, e.key, kid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signRaw signs any payload under any protected header (for the malformed cases).
func (e *env) signRaw(t *testing.T, header, payload string) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	h := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, e.key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return Prefix + input + "." + b64(sig)
}

func TestVaultRoundTrip(t *testing.T) {
	e := newEnv(t)
	s, err := NewVault(vaultURI)
	if err != nil {
		t.Fatal(err)
	}
	v := e.seal(t, s)
	// CoCo's exact layout: header {"alg":"ES256","kid":...}, payload fields.
	parts := strings.Split(strings.TrimPrefix(v, Prefix), ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h map[string]any
	if err := json.Unmarshal(hdr, &h); err != nil || h["alg"] != "ES256" || h["kid"] != kid {
		t.Fatalf("header %s", hdr)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	want := `{"version":"0.1.0","type":"vault","name":"kbs:///default/secret/db","provider":"kbs","provider_settings":{},"annotations":{}}`
	if string(payload) != want {
		t.Fatalf("payload\n%s\nwant\n%s", payload, want)
	}
	got, err := Open(context.Background(), v, e.f, nil)
	if err != nil || string(got) != "s3cr3t-db-password" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if got, err := Open(context.Background(), v, e.f, []string{"kbs:///x/y/z", kid}); err != nil || string(got) != "s3cr3t-db-password" {
		t.Fatalf("Open with trusted keys = %q, %v", got, err)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := newEnv(t)
	s, err := NewEnvelope([]byte("the plaintext"), e.kek, kekURI, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := e.seal(t, s)
	got, err := Open(context.Background(), v, e.f, nil)
	if err != nil || string(got) != "the plaintext" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if strings.Contains(v, "the plaintext") {
		t.Fatal("the sealed value holds the plaintext")
	}
}

func TestEnvelopeWrongKEK(t *testing.T) {
	e := newEnv(t)
	s, _ := NewEnvelope([]byte("p"), e.kek, kekURI, nil)
	v := e.seal(t, s)
	other := make([]byte, 32)
	rand.Read(other)
	e.f[kekURI] = other
	if _, err := Open(context.Background(), v, e.f, nil); !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), kekURI) {
		t.Fatalf("wrong KEK: %v", err)
	}
	e.f[kekURI] = []byte("short")
	if _, err := Open(context.Background(), v, e.f, nil); !errors.Is(err, ErrKey) {
		t.Fatalf("short KEK: %v", err)
	}
	// A tampered ciphertext fails GCM's authentication.
	e.f[kekURI] = e.kek
	data, _ := base64.StdEncoding.DecodeString(s.EncryptedData)
	data[0] ^= 1
	s.EncryptedData = base64.StdEncoding.EncodeToString(data)
	if _, err := Open(context.Background(), e.seal(t, s), e.f, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("tampered data: %v", err)
	}
}

func TestWrongSignature(t *testing.T) {
	e := newEnv(t)
	s, _ := NewVault(vaultURI)
	v := e.seal(t, s)
	// Flip one character in each part (staying base64url): header, payload, signature.
	parts := strings.Split(strings.TrimPrefix(v, Prefix), ".")
	for i := range parts {
		p := append([]string(nil), parts...)
		b, _ := base64.RawURLEncoding.DecodeString(p[i])
		b[len(b)/2] ^= 0x01
		p[i] = base64.RawURLEncoding.EncodeToString(b)
		_, err := Open(context.Background(), Prefix+strings.Join(p, "."), e.f, nil)
		if err == nil {
			t.Fatalf("part %d tampered: unsealed", i)
		}
	}
	// Another payload under the original signature.
	other, _ := NewVault("kbs:///default/secret/other")
	v2 := e.seal(t, other)
	p2 := strings.Split(strings.TrimPrefix(v2, Prefix), ".")
	swapped := Prefix + parts[0] + "." + p2[1] + "." + parts[2]
	if _, err := Open(context.Background(), swapped, e.f, nil); !errors.Is(err, ErrSignature) {
		t.Fatalf("payload swapped: %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	e := newEnv(t)
	s, _ := NewVault(vaultURI)
	other, _ := GenerateKey()
	v, err := Seal(s, other, kid) // signed by a key the KBS does not hold under kid
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), v, e.f, nil); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), kid) {
		t.Fatalf("wrong key: %v", err)
	}
	// A kid that the measured configuration does not trust is refused before any fetch.
	v = e.seal(t, s)
	if _, err := Open(context.Background(), v, fetcher{}, []string{"kbs:///default/sealed/other"}); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("untrusted kid: %v", err)
	}
	// The verification key missing from the KBS, or not a P-256 key.
	if _, err := Open(context.Background(), v, fetcher{vaultURI: []byte("x")}, nil); err == nil || !strings.Contains(err.Error(), "verification key "+kid) {
		t.Fatalf("no verification key: %v", err)
	}
	if _, err := Open(context.Background(), v, fetcher{kid: []byte("not a key")}, nil); !errors.Is(err, ErrKey) {
		t.Fatalf("bad verification key: %v", err)
	}
	// No KBS at all.
	if _, err := Open(context.Background(), v, nil, nil); err == nil || !strings.Contains(err.Error(), "no KBS") {
		t.Fatalf("no fetcher: %v", err)
	}
}

func TestResourceMissing(t *testing.T) {
	e := newEnv(t)
	s, _ := NewVault("kbs:///default/secret/missing")
	_, err := Open(context.Background(), e.seal(t, s), e.f, nil)
	if err == nil || !strings.Contains(err.Error(), "kbs:///default/secret/missing") {
		t.Fatalf("missing resource: %v", err)
	}
}

func TestMalformed(t *testing.T) {
	e := newEnv(t)
	hdr := `{"alg":"ES256","kid":"` + kid + `"}`
	vault := `{"version":"0.1.0","type":"vault","name":"kbs:///default/secret/db","provider":"kbs","provider_settings":{},"annotations":{}}`
	good, _ := NewEnvelope([]byte("p"), e.kek, kekURI, nil)
	envJSON := func(mod func(m map[string]any)) string {
		b, _ := json.Marshal(good)
		var m map[string]any
		json.Unmarshal(b, &m)
		mod(m)
		out, _ := json.Marshal(m)
		return string(out)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	cases := []struct{ name, value, want string }{
		{"no prefix", strings.TrimPrefix(e.signRaw(t, hdr, vault), Prefix), "does not start with"},
		{"two parts", Prefix + "a.b", "got 2 dot-separated parts"},
		{"four parts (CoCo's fake form)", Prefix + "fakejwsheader." + b64([]byte(vault)) + ".fakesignature.x", "dot-separated"},
		{"fake header and signature", Prefix + "fakejwsheader." + b64([]byte(vault)) + ".fakesignature", "protected header is not base64url"},
		{"empty payload", Prefix + b64([]byte(hdr)) + "..sig", "payload is empty"},
		{"not base64url", Prefix + b64([]byte(hdr)) + ".a+b/." + "c", "not base64url"},
		{"alg none", e.signRaw(t, `{"alg":"none","kid":"`+kid+`"}`, vault), "JWS"},
		{"alg HS256", e.signRaw(t, `{"alg":"HS256","kid":"`+kid+`"}`, vault), "JWS"},
		{"no kid", e.signRaw(t, `{"alg":"ES256"}`, vault), "no kid"},
		{"kid a path", e.signRaw(t, `{"alg":"ES256","kid":"/etc/key"}`, vault), "kid"},
		{"kid with a host", e.signRaw(t, `{"alg":"ES256","kid":"kbs://evil/a/b/c"}`, vault), "kid"},
		{"payload not JSON", e.signRaw(t, hdr, "not json"), "not a JSON object"},
		{"payload trailing data", e.signRaw(t, hdr, vault+"{}"), "not a JSON object"},
		{"version", e.signRaw(t, hdr, strings.Replace(vault, "0.1.0", "0.2.0", 1)), "version"},
		{"type", e.signRaw(t, hdr, strings.Replace(vault, `"vault"`, `"plain"`, 1)), "type"},
		{"unknown field", e.signRaw(t, hdr, strings.Replace(vault, `"annotations"`, `"extra":1,"annotations"`, 1)), "unknown field"},
		{"missing field", e.signRaw(t, hdr, strings.Replace(vault, `,"annotations":{}`, ``, 1)), `"annotations" is missing`},
		{"provider", e.signRaw(t, hdr, strings.Replace(vault, `"provider":"kbs"`, `"provider":"aliyun"`, 1)), "provider"},
		{"provider settings", e.signRaw(t, hdr, strings.Replace(vault, `"provider_settings":{}`, `"provider_settings":{"a":1}`, 1)), "provider_settings"},
		{"vault name", e.signRaw(t, hdr, strings.Replace(vault, "kbs:///default/secret/db", "kbs:///../x/y", 1)), "name"},
		{"vault with an envelope field", e.signRaw(t, hdr, strings.Replace(vault, `"annotations"`, `"iv":"x","annotations"`, 1)), "unknown field"},
		{"envelope CTR", e.signRaw(t, hdr, envJSON(func(m map[string]any) { m["wrap_type"] = "A256CTR" })), "wrap_type"},
		{"envelope iv length", e.signRaw(t, hdr, envJSON(func(m map[string]any) { m["iv"] = "AAAA" })), "iv is 3 bytes"},
		{"envelope base64", e.signRaw(t, hdr, envJSON(func(m map[string]any) { m["encrypted_key"] = "!!" })), "encrypted_key is not standard base64"},
		{"envelope key_id", e.signRaw(t, hdr, envJSON(func(m map[string]any) { m["key_id"] = "kek" })), "key_id"},
		{"envelope missing data", e.signRaw(t, hdr, envJSON(func(m map[string]any) { delete(m, "encrypted_data") })), `"encrypted_data" is missing`},
		{"envelope with a name", e.signRaw(t, hdr, envJSON(func(m map[string]any) { m["name"] = vaultURI })), "unknown field"},
		{"too long", Prefix + strings.Repeat("a", MaxValue+1), "more than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Open(context.Background(), c.value, e.f, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error holds the secret: %v", err)
			}
		})
	}
	// The well-formed envelope and vault made by signRaw do unseal (the cases fail for their
	// own reason).
	for _, p := range []string{vault, envJSON(func(map[string]any) {})} {
		if _, err := Open(context.Background(), e.signRaw(t, hdr, p), e.f, nil); err != nil {
			t.Fatalf("control %s: %v", p, err)
		}
	}
}

func TestKeys(t *testing.T) {
	k, _ := GenerateKey()
	jwk, _ := jose.JSONWebKey{Key: k}.MarshalJSON()
	if got, err := ParsePrivateKey(jwk); err != nil || !got.Equal(k) {
		t.Fatalf("private JWK: %v", err)
	}
	if got, err := ParsePublicKey(jwk); err != nil || !got.Equal(&k.PublicKey) {
		t.Fatalf("public half of a private JWK: %v", err)
	}
	if _, err := Seal(&Secret{Version: Version, Type: TypeVault, Name: vaultURI, Provider: ProviderKBS}, k, "not-a-uri"); err == nil {
		t.Fatal("kid not a URI: sealed")
	}
	if _, err := ParsePrivateKey([]byte("-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----\n")); !errors.Is(err, ErrKey) {
		t.Fatalf("RSA PEM: %v", err)
	}
}

func TestIsSealed(t *testing.T) {
	if !IsSealed([]byte("sealed.x")) || IsSealed([]byte("Sealed.x")) || IsSealed([]byte(" sealed.")) {
		t.Fatal("IsSealed")
	}
}
