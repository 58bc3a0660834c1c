package daemon

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbswire/admin"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/token"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// replicaKeys writes a session key and a token-signing key as a Kubernetes Secret mounts them
// for a pod with fsGroup (mode 0440), and returns their files.
func replicaKeys(t *testing.T, dir string) (sessionKey, tokenKey string) {
	t.Helper()
	sessionKey, tokenKey = filepath.Join(dir, "session.key"), filepath.Join(dir, "token-signing-key.pem")
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	iss, err := token.GenerateIssuer(token.IssuerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := iss.PrivateKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{sessionKey: k, tokenKey: pemKey} {
		if err := os.WriteFile(f, b, 0o440); err != nil {
			t.Fatal(err)
		}
	}
	return sessionKey, tokenKey
}

// attestCall is an attest request as it went through the router: what a host that sees the
// guest's traffic could replay.
type attestCall struct {
	cookie string
	body   []byte
}

// router sends each request to the replica route picks by path (the part after /kbs/v0/),
// and records the attest requests.
type router struct {
	mu      sync.Mutex
	attests []attestCall
}

func (rt *router) serve(t *testing.T, route func(endpoint string) string) string {
	t.Helper()
	proxies := map[string]*httputil.ReverseProxy{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		endpoint := strings.TrimPrefix(r.URL.Path, protocol.PathPrefix+"/")
		if endpoint == "attest" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			rt.mu.Lock()
			rt.attests = append(rt.attests, attestCall{cookie: r.Header.Get("Cookie"), body: body})
			rt.mu.Unlock()
		}
		target := route(endpoint)
		rt.mu.Lock()
		p := proxies[target]
		if p == nil {
			u, _ := neturl.Parse(target)
			p = httputil.NewSingleHostReverseProxy(u)
			proxies[target] = p
		}
		rt.mu.Unlock()
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// Several veil-kbs replicas behind one Service share nothing but two key files, as
// deploy/kbs/overlays/replicas mounts them from one Secret: the session key (challenge
// cookies) and the token-signing key (tokens). A guest whose auth, attest and resource
// requests land on different replicas gets its secret, both ways round; a replica with its
// own token key refuses the others' tokens. A replayed attest request (what the host saw) is
// refused by the replica that took it, is accepted once by the other replica within the
// challenge's lifetime but only wins a token for the guest's own key, and is refused with
// another client's cookie or another key (docs/kbs.md, "Replicas").
func TestReplicasShareKeys(t *testing.T) {
	dir, refs, body, guest := simGuestFiles(t)
	sessionKey, tokenKey := replicaKeys(t, dir)
	replica := func(tokenKeyFile string) string {
		cfg := &Config{Data: filepath.Join(t.TempDir(), "data"), SessionKeyFile: sessionKey, TokenKeyFile: tokenKeyFile,
			AuthRate: -1, Attestation: AttestationConfig{ReferenceValues: refs, SimSNPRoots: filepath.Join(dir, sim.SNPRootsFile)}}
		url := serve(t, cfg)
		res := filepath.Join(cfg.Data, "resources", "default", "key")
		if err := os.MkdirAll(res, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(res, "1"), []byte("from disk"), 0o600); err != nil {
			t.Fatal(err)
		}
		if tokenKeyFile != "" {
			if _, err := os.Stat(filepath.Join(cfg.Data, "token-signing-key.pem")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a replica with a token key file made one in its data directory: %v", err)
			}
		}
		return url
	}
	get := func(url string) ([]byte, error) {
		cl, err := kbsclient.New(url, guest, kbsclient.Options{
			InitData: &protocol.InitData{Format: "toml", Body: body}, Retry: kbsclient.Retry{Attempts: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return cl.GetResource(t.Context(), "kbs:///default/key/1")
	}
	a, b := replica(tokenKey), replica(tokenKey)

	// auth on A, attest on B, the resource on A with B's token; then the other way round.
	var rt router
	for _, c := range []struct{ name, auth, attest, resource string }{{"A-B-A", a, b, a}, {"B-A-B", b, a, b}} {
		url := rt.serve(t, func(ep string) string {
			switch {
			case ep == "auth":
				return c.auth
			case ep == "attest":
				return c.attest
			}
			return c.resource
		})
		if got, err := get(url); err != nil || string(got) != "from disk" {
			t.Fatalf("%s: %q, %v", c.name, got, err)
		}
	}

	// A replica with its own token key refuses the others' tokens (the client attests once
	// more on TokenVerifierError, and is refused again).
	c := replica("")
	url := rt.serve(t, func(ep string) string {
		if ep == "attest" {
			return c
		}
		return a
	})
	var kerr *kbsclient.Error
	if _, err := get(url); !errors.As(err, &kerr) || kerr.Kind != protocol.TokenVerifierError {
		t.Fatalf("a token of a replica with its own token key: %v", err)
	}

	// Replays of the first guest's attest request (A-B-A: taken by B).
	first := rt.attests[0]
	replay := func(to, cookie string, body []byte) (int, []byte) {
		req, err := http.NewRequest("POST", to+protocol.PathPrefix+"/attest", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	if code, out := replay(b, first.cookie, first.body); code != 401 || !strings.Contains(string(out), "already used") {
		t.Fatalf("replay to the replica that took it: %d %s", code, out)
	}
	// To the other replica, the same cookie and body win one token, for the guest's key.
	code, out := replay(a, first.cookie, first.body)
	if code != 200 {
		t.Fatalf("replay to the other replica: %d %s", code, out)
	}
	if got, want := tokenPubKey(t, out), requestPubKey(t, first.body); !reflect.DeepEqual(got, want) {
		t.Fatalf("the replayed token's tee-pubkey %v is not the guest's %v", got, want)
	}
	if code, out := replay(a, first.cookie, first.body); code != 401 || !strings.Contains(string(out), "already used") {
		t.Fatalf("second replay to the other replica: %d %s", code, out)
	}
	// Another client's cookie (its own auth on A) with the guest's body: the nonce differs.
	resp, err := http.Post(a+protocol.PathPrefix+"/auth", "application/json", strings.NewReader(`{"version":"0.4.0","tee":"snp"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, out = replay(a, resp.Header.Get("Set-Cookie"), first.body)
	if code != 401 || !strings.Contains(string(out), "differs from the session's challenge") {
		t.Fatalf("replay with another client's cookie: %d %s", code, out)
	}
	// The second guest's request (B-A-B, taken by A) replayed to B with the attacker's key in
	// place of the guest's: the evidence binds the guest's key.
	second := rt.attests[1]
	var doc map[string]any
	if err := json.Unmarshal(second.body, &doc); err != nil {
		t.Fatal(err)
	}
	doc["runtime-data"].(map[string]any)["tee-pubkey"] = map[string]any{"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
		"x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis", "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}
	forged, _ := json.Marshal(doc)
	code, out = replay(b, second.cookie, forged)
	if code != 401 || !strings.Contains(string(out), "REPORT_DATA") {
		t.Fatalf("replay with another key: %d %s", code, out)
	}
}

// tokenPubKey returns the tee-pubkey of the token in an attest reply.
func tokenPubKey(t *testing.T, reply []byte) any {
	t.Helper()
	var r struct{ Token string }
	if err := json.Unmarshal(reply, &r); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(r.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", r.Token)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var ear token.EAR
	if err := json.Unmarshal(payload, &ear); err != nil {
		t.Fatal(err)
	}
	raw, err := ear.TEEPubKey()
	if err != nil {
		t.Fatal(err)
	}
	var k any
	if err := json.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// requestPubKey returns the tee-pubkey of an attest request body.
func requestPubKey(t *testing.T, body []byte) any {
	t.Helper()
	var req struct {
		RuntimeData struct {
			TEEPubKey any `json:"tee-pubkey"`
		} `json:"runtime-data"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	return req.RuntimeData.TEEPubKey
}

// --token-key-file: read from the flag or the TOML key; refused when others may read it, when
// it is not a P-256 key, or when it does not exist; a 0440 file (a Secret with fsGroup) is
// taken.
func TestTokenKeyFile(t *testing.T) {
	dir := t.TempDir()
	_, tokenKey := replicaKeys(t, dir)
	cfg, err := ParseFlags("veil-kbs", []string{"--data", filepath.Join(dir, "data"), "--token-key-file", tokenKey})
	if err != nil || cfg.TokenKeyFile != tokenKey {
		t.Fatalf("flag: %+v, %v", cfg, err)
	}
	toml := filepath.Join(dir, "kbs.toml")
	if err := os.WriteFile(toml, []byte("data = \"x\"\ntoken_key_file = \""+tokenKey+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadFile(toml); err != nil || c.TokenKeyFile != tokenKey {
		t.Fatalf("TOML: %+v, %v", c, err)
	}
	d, err := Prepare(t.Context(), &Config{Data: filepath.Join(dir, "data"), TokenKeyFile: tokenKey})
	if err != nil {
		t.Fatal(err)
	}
	if d.Layout().TokenKey != tokenKey {
		t.Fatalf("token key %s, want %s", d.Layout().TokenKey, tokenKey)
	}
	d.store.Close()

	open := filepath.Join(dir, "open.pem")
	b, _ := os.ReadFile(tokenKey)
	notKey := filepath.Join(dir, "not-a-key.pem")
	if err := os.WriteFile(open, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notKey, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{open: "mode 0644", notKey: "no PEM block", filepath.Join(dir, "missing.pem"): "no such file"} {
		_, err := Prepare(t.Context(), &Config{Data: filepath.Join(t.TempDir(), "data"), TokenKeyFile: file})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("token key file %s: %v, want %q", filepath.Base(file), err, want)
		}
	}
}

// Replicas sharing one data volume (deploy/kbs/overlays/replicas) start at once: each writes
// the default policies it finds missing under a temporary name of its own, so every start
// succeeds and no file is left half-written or behind.
func TestReplicasFirstStartTogether(t *testing.T) {
	dir := t.TempDir()
	sessionKey, tokenKey := replicaKeys(t, dir)
	adminPub := filepath.Join(dir, "admin-public-key.pem")
	if _, err := admin.GenerateKeyPair(filepath.Join(dir, "admin-private-key.pem"), adminPub); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		data := filepath.Join(t.TempDir(), "data")
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for r := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := Prepare(t.Context(), &Config{Data: data, SessionKeyFile: sessionKey, TokenKeyFile: tokenKey,
					AdminPublicKeys: []string{adminPub}})
				if err == nil {
					d.store.Close()
				}
				errs[r] = err
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		left, _ := filepath.Glob(filepath.Join(data, "*", ".*tmp*"))
		top, _ := filepath.Glob(filepath.Join(data, ".*tmp*"))
		if len(left)+len(top) > 0 {
			t.Fatalf("round %d: left behind %q", i, append(left, top...))
		}
	}
}
