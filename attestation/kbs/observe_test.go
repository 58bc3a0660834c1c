package kbs_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// The logs of a full handshake, at debug level, hold no nonce, session id, token, key or
// resource byte.
func TestLogsHoldNoSecret(t *testing.T) {
	var buf bytes.Buffer
	log.L.Logger.SetOutput(&buf)
	log.L.Logger.SetLevel(logrus.DebugLevel)
	defer func() {
		log.L.Logger.SetOutput(io.Discard)
		log.L.Logger.SetLevel(logrus.InfoLevel)
	}()
	env := kbstest.NewServer(t, nil)
	putResource(t, env, secretPath, secret)
	g := newGuest(t, env.URL())
	g.handshake()
	g.open(g.get(secretPath, true, false))
	g.open(g.get(secretPath, false, true))
	g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil)) // refused: spent
	logs := buf.String()
	if !strings.Contains(logs, "resource released") {
		t.Fatalf("the logs do not show the release:\n%s", logs)
	}
	for name, s := range map[string]string{
		"nonce": g.nonce, "session id": g.cookie, "token": g.token, "resource": string(secret),
		"resource base64": base64.StdEncoding.EncodeToString(secret), "tee-pubkey": string(g.jwk),
		"admin token": env.AdminToken(t)[:40],
	} {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain the %s", name)
		}
	}
}

func TestMetrics(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	putResource(t, env, secretPath, secret)
	g := newGuest(t, env.URL())
	g.handshake()
	g.open(g.get(secretPath, true, false))
	newGuest(t, env.URL()).auth("0.1.0", kbstest.TEE)
	r := do(t, "GET", env.URL()+"/metrics", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("metrics: %d", r.status)
	}
	for _, want := range []string{
		`veil_kbs_requests_total{code="200",endpoint="auth"} 1`,
		`veil_kbs_requests_total{code="401",endpoint="auth"} 1`,
		`veil_kbs_attestations_total{result="success",tee="sample"} 1`,
		`veil_kbs_denials_total{endpoint="auth",reason="version"} 1`,
		`veil_kbs_resources_released_total 1`,
		`veil_kbs_request_duration_seconds_bucket{endpoint="attest",le="+Inf"} 1`,
		`veil_kbs_spent_nonces 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %s:\n%s", want, r.body)
		}
	}
}

// serve calls the handler directly, for the fuzz targets.
func serve(env *kbstest.Env, method, path string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://kbs"+path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	env.KBS.ServeHTTP(rec, req)
	return rec
}

// checkReply fails unless a reply is a 200 or a well-formed refusal with the protocol's status.
func checkReply(t *testing.T, rec *httptest.ResponseRecorder, allowOK bool) {
	t.Helper()
	if rec.Code == http.StatusOK {
		if !allowOK {
			t.Fatalf("accepted: %s", rec.Body)
		}
		return
	}
	e := reply{status: rec.Code, body: rec.Body.Bytes()}.errInfo(t)
	if e.Kind() == "" || (rec.Code == 404) != (e.Kind() == protocol.InvalidRequestPath) || rec.Code != 401 && rec.Code != 404 {
		t.Fatalf("refusal %d %+v", rec.Code, e)
	}
	if strings.Contains(rec.Body.String(), string(secret)) {
		t.Fatal("a refusal carries the resource")
	}
}

func FuzzAuth(f *testing.F) {
	env := kbstest.NewServer(f, nil)
	f.Add([]byte(`{"version":"0.4.0","tee":"sample","extra-params":{}}`))
	f.Add([]byte(`{"version":"0.1.0","tee":"snp"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkReply(t, serve(env, "POST", "/kbs/v0/auth", body, nil), true)
	})
}

func FuzzAttest(f *testing.F) {
	env := kbstest.NewServer(f, nil)
	g := &guest{jwk: []byte(`{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AA","y":"AA"}`)}
	f.Add([]byte(`{"init-data":null,"runtime-data":{"nonce":"x","tee-pubkey":{}},"tee-evidence":{"primary_evidence":{},"additional_evidence":""}}`))
	f.Add([]byte(`{"runtime-data":{"nonce":"x","tee-pubkey":` + string(g.jwk) + `},"tee-evidence":{"primary_evidence":{"svn":"1","report_data":"AAAA"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		auth := serve(env, "POST", "/kbs/v0/auth", []byte(`{"version":"0.4.0","tee":"sample"}`), nil)
		hdr := map[string]string{"Cookie": auth.Header().Get("Set-Cookie")}
		checkReply(t, serve(env, "POST", "/kbs/v0/attest", body, hdr), false)
	})
}

func FuzzResourcePath(f *testing.F) {
	env := kbstest.NewServer(f, nil)
	if err := env.Store.Put(f.Context(), protocol.ResourcePath{Repository: "default", Type: "key", Tag: "1"}, secret); err != nil {
		f.Fatal(err)
	}
	f.Add("default/key/1", "")
	f.Add("../../etc/passwd", "Bearer x")
	f.Add("default/key/1", "Bearer "+env.AdminToken(f))
	f.Fuzz(func(t *testing.T, path, auth string) {
		if _, err := url.ParseRequestURI("/kbs/v0/resource/" + path); err != nil || strings.ContainsAny(path, " \t\r\n#?") || strings.ContainsAny(auth, "\r\n") {
			return // not a request line or header that HTTP can carry
		}
		hdr := map[string]string{"Authorization": auth}
		checkReply(t, serve(env, "GET", "/kbs/v0/resource/"+path, nil, hdr), false)
	})
}

func FuzzAdminBody(f *testing.F) {
	env := kbstest.NewServer(f, nil)
	bearer := map[string]string{"Authorization": "Bearer " + env.AdminToken(f)}
	f.Add([]byte(`{"policy":"cGFja2FnZSBwb2xpY3kKYWxsb3cgOj0gZmFsc2UK"}`), uint8(0))
	f.Add([]byte(`{"type":"rego","policy_id":"default","policy":"cGFja2FnZSBwb2xpY3kK"}`), uint8(1))
	f.Add([]byte("resource bytes"), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		path := []string{"/kbs/v0/resource-policy", "/kbs/v0/attestation-policy", "/kbs/v0/resource/fuzz/key/1"}[int(which)%3]
		checkReply(t, serve(env, "POST", path, body, bearer), true)
	})
}
