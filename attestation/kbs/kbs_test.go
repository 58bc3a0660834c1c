package kbs_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"testing"

	"github.com/veil-runtime/veil/attestation/binding"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/jwe"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// reply is one HTTP answer, read in full.
type reply struct {
	status  int
	body    []byte
	cookies []*http.Cookie
}

// errInfo decodes the error document of a refusal.
func (r reply) errInfo(t *testing.T) protocol.ErrorInfo {
	t.Helper()
	var e protocol.ErrorInfo
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("reply %d is not an error document: %q", r.status, r.body)
	}
	return e
}

func do(t *testing.T, method, url string, body []byte, hdr map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, body: b, cookies: resp.Cookies()}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// guest is the client side of one handshake, driven by hand so that tests can break it.
type guest struct {
	t      *testing.T
	url    string
	key    crypto.Signer
	jwk    json.RawMessage
	cookie string // the challenge cookie of auth
	nonce  string
	token  string
	// session is the cookie that attest sets: the session once attested, as a client with
	// a cookie store sends it.
	session string
}

func newGuest(t *testing.T, url string) *guest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newGuestKey(t, url, key)
}

func newGuestKey(t *testing.T, url string, key crypto.Signer) *guest {
	t.Helper()
	jwk, err := jwe.PublicJWK(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &guest{t: t, url: url, key: key, jwk: jwk}
}

func (g *guest) auth(version, tee string) reply {
	g.t.Helper()
	r := do(g.t, "POST", g.url+"/kbs/v0/auth", mustJSON(g.t, protocol.Request{Version: version, TEE: tee, ExtraParams: json.RawMessage(`{}`)}), nil)
	if r.status == http.StatusOK {
		var ch protocol.Challenge
		if err := json.Unmarshal(r.body, &ch); err != nil {
			g.t.Fatal(err)
		}
		g.nonce = ch.Nonce
		for _, c := range r.cookies {
			if c.Name == protocol.SessionCookie {
				g.cookie = c.Value
			}
		}
	}
	return r
}

// attestation builds an attest body for nonce, with evidence made by att.
func (g *guest) attestation(nonce string, att *kbstest.Attester, initdata *protocol.InitData) []byte {
	g.t.Helper()
	rd, err := binding.ReportData(nonce, g.jwk, "")
	if err != nil {
		g.t.Fatal(err)
	}
	ev, err := att.Evidence(context.Background(), rd)
	if err != nil {
		g.t.Fatal(err)
	}
	return mustJSON(g.t, protocol.Attestation{
		InitData:    initdata,
		RuntimeData: protocol.RuntimeData{Nonce: nonce, TEEPubKey: g.jwk},
		TEEEvidence: protocol.TEEEvidence{Primary: ev},
	})
}

func (g *guest) attest(body []byte) reply {
	g.t.Helper()
	hdr := map[string]string{"Content-Type": "application/json"}
	if g.cookie != "" {
		hdr["Cookie"] = protocol.SessionCookie + "=" + g.cookie
	}
	r := do(g.t, "POST", g.url+"/kbs/v0/attest", body, hdr)
	if r.status == http.StatusOK {
		var resp protocol.AttestationResponse
		if err := json.Unmarshal(r.body, &resp); err != nil {
			g.t.Fatal(err)
		}
		g.token = resp.Token
		for _, c := range r.cookies {
			if c.Name == protocol.SessionCookie {
				g.session = c.Value
			}
		}
	}
	return r
}

// handshake runs auth and attest and fails the test on any refusal.
func (g *guest) handshake() {
	g.t.Helper()
	if r := g.auth(protocol.Version, kbstest.TEE); r.status != http.StatusOK {
		g.t.Fatalf("auth: %d %s", r.status, r.body)
	}
	if r := g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil)); r.status != http.StatusOK {
		g.t.Fatalf("attest: %d %s", r.status, r.body)
	}
}

func (g *guest) get(path string, cookie, bearer bool) reply {
	g.t.Helper()
	hdr := map[string]string{}
	if cookie {
		c := g.session
		if c == "" {
			c = g.cookie
		}
		hdr["Cookie"] = protocol.SessionCookie + "=" + c
	}
	if bearer {
		hdr["Authorization"] = "Bearer " + g.token
	}
	return do(g.t, "GET", g.url+"/kbs/v0/resource/"+path, nil, hdr)
}

// open decrypts a resource reply.
func (g *guest) open(r reply) []byte {
	g.t.Helper()
	if r.status != http.StatusOK {
		g.t.Fatalf("resource: %d %s", r.status, r.body)
	}
	var j jwe.JWE
	if err := json.Unmarshal(r.body, &j); err != nil {
		g.t.Fatal(err)
	}
	pt, err := jwe.Decrypt(g.key, &j)
	if err != nil {
		g.t.Fatal(err)
	}
	return pt
}

func putResource(t *testing.T, env *kbstest.Env, path string, data []byte) {
	t.Helper()
	r := do(t, "POST", env.URL()+"/kbs/v0/resource/"+path, data, map[string]string{"Authorization": "Bearer " + env.AdminToken(t)})
	if r.status != http.StatusOK {
		t.Fatalf("set resource: %d %s", r.status, r.body)
	}
}

func TestHandshake(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	secret := []byte("top secret \x00\xff")
	putResource(t, env, "default/key/1", secret)

	g := newGuest(t, env.URL())
	r := g.auth(protocol.Version, kbstest.TEE)
	if r.status != http.StatusOK {
		t.Fatalf("auth: %d %s", r.status, r.body)
	}
	// The challenge, sealed: base64url of about 100 bytes.
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{100,200}$`).MatchString(g.cookie) || r.cookies[0].Expires.IsZero() {
		t.Fatalf("session cookie %+v", r.cookies[0])
	}
	if raw, err := base64.StdEncoding.DecodeString(g.nonce); err != nil || len(raw) != 32 {
		t.Fatalf("nonce %q: %d bytes, %v", g.nonce, len(raw), err)
	}
	if !bytes.Contains(r.body, []byte(`"extra-params":""`)) {
		t.Fatalf("challenge %s", r.body)
	}
	init := &protocol.InitData{Format: "toml", Body: "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"}
	if r := g.attest(g.attestation(g.nonce, &kbstest.Attester{}, init)); r.status != http.StatusOK {
		t.Fatalf("attest: %d %s", r.status, r.body)
	}
	if g.session != g.token {
		t.Fatalf("the attested session's cookie is not the token: %q", g.session)
	}
	ev := env.Attestation.Last()
	want, _ := binding.ReportData(g.nonce, g.jwk, "")
	if ev.ReportData != want || ev.InitData == nil || ev.InitData.Body != init.Body || ev.TEE != kbstest.TEE {
		t.Fatalf("the attestation service got %+v", ev)
	}
	if got := g.open(g.get("default/key/1", true, false)); !bytes.Equal(got, secret) {
		t.Fatalf("resource by cookie = %q", got)
	}
	if got := g.open(g.get("default/key/1", false, true)); !bytes.Equal(got, secret) {
		t.Fatalf("resource by bearer token = %q", got)
	}
	// An RSA key works too.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rg := newGuestKey(t, env.URL(), rk)
	rg.handshake()
	if got := rg.open(rg.get("default/key/1", false, true)); !bytes.Equal(got, secret) {
		t.Fatalf("resource to an RSA key = %q", got)
	}
}
