package kbsclient_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

func TestMain(m *testing.M) {
	log.L.Logger.SetOutput(io.Discard)
	os.Exit(m.Run())
}

var fastRetry = kbsclient.Retry{Attempts: 4, Initial: time.Millisecond, Max: 5 * time.Millisecond}

// counting wraps a handler: it counts requests per path and can fail the next ones.
type counting struct {
	mu      sync.Mutex
	next    http.Handler
	counts  map[string]int
	failing int // the next n requests get 503
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.counts[r.URL.Path]++
	fail := c.failing > 0
	if fail {
		c.failing--
	}
	next := c.next
	c.mu.Unlock()
	if fail {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
		return
	}
	next.ServeHTTP(w, r)
}

func (c *counting) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[path]
}

func setup(t *testing.T) (*kbstest.Env, *counting, *httptest.Server) {
	t.Helper()
	return setupB(t)
}

func setupB(t testing.TB) (*kbstest.Env, *counting, *httptest.Server) {
	t.Helper()
	env := kbstest.NewServer(t, nil)
	for _, p := range []string{"default/key/1", "default/key/2"} {
		rp, _ := protocol.ParseResourcePath(p)
		if err := env.Store.Put(context.Background(), rp, []byte("secret "+p)); err != nil {
			t.Fatal(err)
		}
	}
	c := &counting{next: env.KBS, counts: map[string]int{}}
	hs := httptest.NewServer(c)
	t.Cleanup(hs.Close)
	return env, c, hs
}

func TestGetResource(t *testing.T) {
	for _, kt := range []kbsclient.KeyType{kbsclient.KeyEC, kbsclient.KeyRSA} {
		t.Run(string(kt), func(t *testing.T) {
			env, counts, hs := setup(t)
			init := &protocol.InitData{Format: "toml", Body: "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"}
			cl, err := kbsclient.New(hs.URL, &kbstest.Attester{}, kbsclient.Options{KeyType: kt, InitData: init, Retry: fastRetry})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"default/key/1", "default/key/2", "default/key/1"} {
				got, err := cl.GetResource(t.Context(), "kbs:///"+p)
				if err != nil || string(got) != "secret "+p {
					t.Fatalf("GetResource(%s) = %q, %v", p, got, err)
				}
			}
			if n := counts.count("/kbs/v0/attest"); n != 1 {
				t.Fatalf("%d attestations for three resources, want the token reused", n)
			}
			if ev := env.Attestation.Last(); ev.InitData == nil || ev.InitData.Body != init.Body {
				t.Fatalf("init-data not sent: %+v", ev.InitData)
			}
			tok, err := cl.Token(t.Context())
			if err != nil || tok.Expires.Before(time.Now()) || tok.Claims["submods"] == nil {
				t.Fatalf("Token = %+v, %v", tok, err)
			}
		})
	}
}

func TestTokenRenewal(t *testing.T) {
	_, counts, hs := setup(t)
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	cl, err := kbsclient.New(hs.URL, &kbstest.Attester{}, kbsclient.Options{Now: now, Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetResource(t.Context(), "kbs:///default/key/1"); err != nil {
		t.Fatal(err)
	}
	skew.Store(int64(5 * time.Minute)) // the token is about to expire
	if _, err := cl.GetResource(t.Context(), "kbs:///default/key/1"); err != nil {
		t.Fatal(err)
	}
	if n := counts.count("/kbs/v0/attest"); n != 2 {
		t.Fatalf("%d attestations, want a renewal", n)
	}
}

// After a KBS restart with a new token key, the client attests again once by itself.
func TestReattestAfterRestart(t *testing.T) {
	_, counts, hs := setup(t)
	cl, err := kbsclient.New(hs.URL, &kbstest.Attester{}, kbsclient.Options{Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetResource(t.Context(), "kbs:///default/key/1"); err != nil {
		t.Fatal(err)
	}
	env2, _, _ := setup(t)
	counts.mu.Lock()
	counts.next = env2.KBS
	counts.mu.Unlock()
	got, err := cl.GetResource(t.Context(), "kbs:///default/key/2")
	if err != nil || string(got) != "secret default/key/2" {
		t.Fatalf("GetResource after restart = %q, %v", got, err)
	}
	if n := counts.count("/kbs/v0/attest"); n != 2 {
		t.Fatalf("%d attestations, want 2", n)
	}
}

func TestRetry(t *testing.T) {
	_, counts, hs := setup(t)
	counts.failing = 2
	cl, err := kbsclient.New(hs.URL, &kbstest.Attester{}, kbsclient.Options{Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetResource(t.Context(), "kbs:///default/key/1"); err != nil {
		t.Fatalf("GetResource through two 503s: %v", err)
	}
	counts.failing = 100
	_, err = cl.GetResource(t.Context(), "kbs:///default/key/2")
	var ke *kbsclient.Error
	if !errors.As(err, &ke) || ke.StatusCode != 503 || !strings.Contains(err.Error(), "KBS "+hs.URL+" get resource default/key/2: giving up after 4 attempts") {
		t.Fatalf("error %v, want a 503 after 4 attempts, naming the KBS and the request", err)
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cl, err := kbsclient.New("http://"+addr, &kbstest.Attester{}, kbsclient.Options{Retry: kbsclient.Retry{Attempts: 100, Initial: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = cl.GetResource(ctx, "kbs:///default/key/1")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("error %v, want the deadline with the refusal", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("retries outlived the context: %v", d)
	}
}

func TestProtocolErrors(t *testing.T) {
	env, counts, hs := setup(t)
	if err := env.Policy.Set(t.Context(), []byte("package policy\nimport rego.v1\nallow if data[\"resource-path\"] != \"/default/key/2\"\n")); err != nil {
		t.Fatal(err)
	}
	cl, err := kbsclient.New(hs.URL, &kbstest.Attester{}, kbsclient.Options{Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		client  *kbsclient.Client
		uri     string
		status  int
		kind    protocol.ErrorKind
		wantErr string
	}{
		{"policy", cl, "kbs:///default/key/2", 401, protocol.PolicyDeny, "denied by the resource policy"},
		{"missing", cl, "kbs:///default/key/9", 404, protocol.InvalidRequestPath, "not found"},
		{"bad evidence", mustClient(t, hs.URL, &kbstest.Attester{Tamper: func(rd [64]byte) [64]byte { rd[1]++; return rd }}), "kbs:///default/key/1", 401, protocol.AttestationError, "report_data does not bind"},
		{"unknown TEE", mustClient(t, hs.URL, &otherTEE{}), "kbs:///default/key/1", 401, protocol.AttestationError, "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counts.count("/kbs/v0/auth") + counts.count("/kbs/v0/resource/default/key/2")
			_, err := tt.client.GetResource(t.Context(), tt.uri)
			var ke *kbsclient.Error
			if !errors.As(err, &ke) || ke.StatusCode != tt.status || ke.Kind != tt.kind || !strings.Contains(ke.Detail, tt.wantErr) {
				t.Fatalf("error %#v, want %d %s %q", err, tt.status, tt.kind, tt.wantErr)
			}
			if after := counts.count("/kbs/v0/auth") + counts.count("/kbs/v0/resource/default/key/2"); after-before > 2 {
				t.Fatalf("a refusal was retried (%d requests)", after-before)
			}
		})
	}
}

type otherTEE struct{ kbstest.Attester }

func (*otherTEE) TEE() string { return "tdx" }

func mustClient(t *testing.T, url string, att kbsclient.Attester) *kbsclient.Client {
	t.Helper()
	cl, err := kbsclient.New(url, att, kbsclient.Options{Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name, url, uri string
		key            kbsclient.KeyType
		wantErr        string
	}{
		{"ftp URL", "ftp://kbs", "", "", "want http(s)"},
		{"no host", "http://", "", "", "want http(s)"},
		{"key type", "http://kbs", "", "DSA", "key type"},
		{"host in URI", "http://kbs", "kbs://other/a/b/c", "", "host"},
		{"traversal", "http://kbs", "kbs:///a/../c", "", "not allowed"},
		{"short", "http://kbs", "kbs:///a/b", "", "repository/type/tag"},
		{"scheme", "http://kbs", "https:///a/b/c", "", "want kbs:///"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := kbsclient.New(tt.url, &kbstest.Attester{}, kbsclient.Options{KeyType: tt.key})
			if err == nil {
				_, err = cl.GetResource(t.Context(), tt.uri)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// The injected HTTP client is the one used.
func TestInjectedHTTPClient(t *testing.T) {
	_, _, hs := setup(t)
	var n atomic.Int32
	hc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		n.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	cl, err := kbsclient.New(hs.URL, &kbstest.Attester{}, kbsclient.Options{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetResource(t.Context(), "kbs:///default/key/1"); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Fatalf("%d requests through the injected client, want 3", n.Load())
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestParseToken(t *testing.T) {
	tests := []struct {
		name, tok, wantErr string
	}{
		{"two parts", "a.b", "compact"},
		{"bad base64", "a.!!.c", "payload"},
		{"not JSON", "a.bm90.c", "claims"},
		{"float exp", "a.eyJleHAiOjEuNX0.c", "exp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := kbsclient.ParseToken(tt.tok); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	tok, err := kbsclient.ParseToken("a.eyJleHAiOjEwMH0.c")
	if err != nil || tok.Expires.Unix() != 100 || !bytes.Equal([]byte(tok.Raw), []byte("a.eyJleHAiOjEwMH0.c")) {
		t.Fatalf("ParseToken = %+v, %v", tok, err)
	}
}
