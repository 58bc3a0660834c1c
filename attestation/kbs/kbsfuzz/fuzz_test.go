package kbsfuzz_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest/sample"
	"github.com/veil-runtime/veil/attestation/kbs/store"
	"github.com/veil-runtime/veil/attestation/kbswire/admin"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

func TestMain(m *testing.M) {
	if os.Getenv("VEIL_TEST_LOGS") == "" {
		log.L.Logger.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}

// secret is the resource the targets' KBS holds; no reply may carry it.
var secret = []byte("the-secret-bytes")

// policy is a resource policy without Rego: it grants the repository "default" to every
// token, and takes any source that starts with "package " (Set is where the real engine
// compiles; that is not what these targets fuzz).
type policy struct {
	mu       sync.Mutex
	src      []byte
	bindings map[string][]string
}

func (p *policy) Allow(_ context.Context, _ map[string]any, r protocol.ResourcePath) (bool, error) {
	return r.Repository == "default", nil
}

func (p *policy) Set(_ context.Context, src []byte) error {
	if !bytes.HasPrefix(src, []byte("package ")) {
		return errors.New("policy: not a Rego module")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.src = bytes.Clone(src)
	return nil
}

func (p *policy) Source() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.src
}

func (p *policy) Bind(repository string, digests []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bindings[repository] = digests
	return nil
}

func (p *policy) Binding(repository string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bindings[repository]
}

// env is a KBS built once per fuzzing worker: its keys are made here, not per input.
type env struct {
	kbs      *kbs.Server
	store    *store.Dir
	adminKey ed25519.PrivateKey
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	st, err := store.OpenDir(storeDir(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	att := sample.NewAttestation()
	srv, err := kbs.New(kbs.Options{Attestation: att, Tokens: att, Resources: st,
		Policy: &policy{bindings: map[string][]string{}}, Admin: admin.NewVerifier(pub), AuthRate: -1})
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.Put(context.Background(), protocol.ResourcePath{Repository: "default", Type: "key", Tag: "1"}, secret); err != nil {
		tb.Fatal(err)
	}
	return &env{kbs: srv, store: st, adminKey: priv}
}

// storeDir is the store's directory: in memory under /dev/shm when the machine has it, since
// a resource replaced on a disk's ext4 costs a flush of its data (auto_da_alloc on rename),
// about 1 ms, which would make FuzzAdminBody a benchmark of the disk.
func storeDir(tb testing.TB) string {
	tb.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "veil-kbsfuzz-"); err == nil {
			tb.Cleanup(func() { _ = os.RemoveAll(d) })
			return d
		}
	}
	return tb.TempDir()
}

// adminToken returns an administrator token valid for an hour: made once, not per input.
func (e *env) adminToken(tb testing.TB) string {
	tb.Helper()
	tok, err := admin.Token(e.adminKey, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// serve calls the KBS's ServeHTTP: the mux and handlers of a request off the network.
func (e *env) serve(method, path string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://kbs"+path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.kbs.ServeHTTP(rec, req)
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
	var e protocol.ErrorInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("reply %d is not an error document: %q", rec.Code, rec.Body)
	}
	if e.Kind() == "" || (rec.Code == 404) != (e.Kind() == protocol.InvalidRequestPath) || rec.Code != 401 && rec.Code != 404 {
		t.Fatalf("refusal %d %+v", rec.Code, e)
	}
	if bytes.Contains(rec.Body.Bytes(), secret) {
		t.Fatal("a refusal carries the resource")
	}
}

const jwk = `{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"AA","y":"AA"}`

func FuzzAuth(f *testing.F) {
	e := newEnv(f)
	f.Add([]byte(`{"version":"0.4.0","tee":"sample","extra-params":{}}`))
	f.Add([]byte(`{"version":"0.1.0","tee":"snp"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkReply(t, e.serve("POST", "/kbs/v0/auth", body, nil), true)
	})
}

// FuzzAttest sends each body with a fresh challenge cookie (an auth per input, as a guest
// would), so that the body is checked against a live session.
func FuzzAttest(f *testing.F) {
	e := newEnv(f)
	f.Add([]byte(`{"init-data":null,"runtime-data":{"nonce":"x","tee-pubkey":{}},"tee-evidence":{"primary_evidence":{},"additional_evidence":""}}`))
	f.Add([]byte(`{"runtime-data":{"nonce":"x","tee-pubkey":` + jwk + `},"tee-evidence":{"primary_evidence":{"svn":"1","report_data":"AAAA"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		auth := e.serve("POST", "/kbs/v0/auth", []byte(`{"version":"0.4.0","tee":"sample"}`), nil)
		if auth.Code != http.StatusOK {
			t.Fatalf("auth: %d %s", auth.Code, auth.Body)
		}
		hdr := map[string]string{"Cookie": auth.Header().Get("Set-Cookie")}
		checkReply(t, e.serve("POST", "/kbs/v0/attest", body, hdr), false)
	})
}

func FuzzResourcePath(f *testing.F) {
	e := newEnv(f)
	f.Add("default/key/1", "")
	f.Add("../../etc/passwd", "Bearer x")
	f.Add("default/key/1", "Bearer "+e.adminToken(f))
	f.Fuzz(func(t *testing.T, path, auth string) {
		if _, err := url.ParseRequestURI("/kbs/v0/resource/" + path); err != nil || strings.ContainsAny(path, " \t\r\n#?") || strings.ContainsAny(auth, "\r\n") {
			return // not a request line or header that HTTP can carry
		}
		hdr := map[string]string{"Authorization": auth}
		checkReply(t, e.serve("GET", "/kbs/v0/resource/"+path, nil, hdr), false)
	})
}

func FuzzAdminBody(f *testing.F) {
	e := newEnv(f)
	bearer := map[string]string{"Authorization": "Bearer " + e.adminToken(f)}
	f.Add([]byte(`{"policy":"cGFja2FnZSBwb2xpY3kKYWxsb3cgOj0gZmFsc2UK"}`), uint8(0))
	f.Add([]byte(`{"type":"rego","policy_id":"default","policy":"cGFja2FnZSBwb2xpY3kK"}`), uint8(1))
	f.Add([]byte("resource bytes"), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		path := []string{"/kbs/v0/resource-policy", "/kbs/v0/attestation-policy", "/kbs/v0/resource/fuzz/key/1"}[int(which)%3]
		checkReply(t, e.serve("POST", path, body, bearer), true)
	})
}

// BenchmarkBodies is what one input of each target costs in the handlers, without the fuzzing
// engine (go test -bench Bodies ./attestation/kbs/kbsfuzz/).
func BenchmarkBodies(b *testing.B) {
	e := newEnv(b)
	bearer := map[string]string{"Authorization": "Bearer " + e.adminToken(b)}
	b.Run("auth", func(b *testing.B) {
		for b.Loop() {
			e.serve("POST", "/kbs/v0/auth", []byte(`{"version":"0.4.0","tee":"sample","extra-params":{}}`), nil)
		}
	})
	b.Run("attest", func(b *testing.B) {
		body := []byte(`{"runtime-data":{"nonce":"x","tee-pubkey":` + jwk + `},"tee-evidence":{"primary_evidence":{"svn":"1","report_data":"AAAA"}}}`)
		for b.Loop() {
			auth := e.serve("POST", "/kbs/v0/auth", []byte(`{"version":"0.4.0","tee":"sample"}`), nil)
			e.serve("POST", "/kbs/v0/attest", body, map[string]string{"Cookie": auth.Header().Get("Set-Cookie")})
		}
	})
	b.Run("resource", func(b *testing.B) {
		for b.Loop() {
			e.serve("GET", "/kbs/v0/resource/default/key/1", nil, map[string]string{"Authorization": "Bearer x"})
		}
	})
	b.Run("admin", func(b *testing.B) {
		for b.Loop() {
			e.serve("POST", "/kbs/v0/resource/fuzz/key/1", []byte("resource bytes"), bearer)
		}
	})
}
