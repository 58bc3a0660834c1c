package kbs_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, kbs.SessionKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// A cookie changed anywhere is refused before anything of it is used.
func TestTamperedCookie(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	g := newGuest(t, env.URL())
	g.auth(protocol.Version, kbstest.TEE)
	body := g.attestation(g.nonce, &kbstest.Attester{}, nil)
	raw, err := base64.RawURLEncoding.DecodeString(g.cookie)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2, 8, len(raw) / 2, len(raw) - 1} {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		tg := *g
		tg.cookie = base64.RawURLEncoding.EncodeToString(bad)
		r := tg.attest(body)
		if r.status != http.StatusUnauthorized || r.errInfo(t).Kind() != protocol.AttestationError {
			t.Fatalf("byte %d flipped: %d %s", i, r.status, r.body)
		}
	}
	tg := *g
	tg.cookie = g.cookie[:len(g.cookie)-4]
	checkRefusal(t, tg.attest(body), 401, protocol.AttestationError, "fails authentication")
	// The original still works: nothing was spent by the forgeries.
	if r := g.attest(body); r.status != http.StatusOK {
		t.Fatalf("attest with the genuine cookie: %d %s", r.status, r.body)
	}
	// And a replay of it is refused.
	checkRefusal(t, g.attest(body), 401, protocol.AttestationError, "already used")
}

// Generated keys rotate every lifetime; a cookie sealed with the previous key opens, one
// sealed with the key before is refused whatever its expiry says.
func TestSessionKeyRotation(t *testing.T) {
	clk := &clock{now: time.Now()}
	env := kbstest.NewServer(t, func(o *kbs.Options) { o.Now = clk.Now })
	ttl := kbs.DefaultSessionTTL
	clk.advance(ttl * 9 / 10)
	old := newGuest(t, env.URL())
	old.auth(protocol.Version, kbstest.TEE) // sealed with key 1
	oldBody := old.attestation(old.nonce, &kbstest.Attester{}, nil)
	stale := *old
	clk.advance(ttl / 10)
	newGuest(t, env.URL()).handshake() // rotates: key 2 seals, key 1 is the previous
	if r := old.attest(oldBody); r.status != http.StatusOK {
		t.Fatalf("cookie of the previous key: %d %s", r.status, r.body)
	}
	clk.advance(ttl)
	newGuest(t, env.URL()).handshake() // rotates: key 3 seals, key 1 is gone
	stale.session = ""
	checkRefusal(t, stale.attest(oldBody), 401, protocol.AttestationError, "no longer accepts")
}

func writeKeyFile(t *testing.T, keys ...[]byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "session.key")
	if err := os.WriteFile(f, bytes.Join(keys, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Replicas that share the key file share sessions: auth on one, attest on the other. A file
// with the current and the previous key carries a rotation.
func TestSharedSessionKey(t *testing.T) {
	k1, k2, k3 := randomKey(t), randomKey(t), randomKey(t)
	load := func(keys ...[]byte) [][]byte {
		got, err := kbs.LoadSessionKeys(writeKeyFile(t, keys...))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	a := kbstest.NewServer(t, func(o *kbs.Options) { o.SessionKeys = load(k1) })
	b := kbstest.NewServer(t, func(o *kbs.Options) { o.SessionKeys = load(k1) })
	rotated := kbstest.NewServer(t, func(o *kbs.Options) { o.SessionKeys = load(k2, k1) })
	later := kbstest.NewServer(t, func(o *kbs.Options) { o.SessionKeys = load(k3, k2) })
	other := kbstest.NewServer(t, nil)
	putResource(t, b, secretPath, secret)

	g := newGuest(t, a.URL())
	g.auth(protocol.Version, kbstest.TEE)
	body := g.attestation(g.nonce, &kbstest.Attester{}, nil)
	for _, e := range []*kbstest.Env{other, later} {
		g.url = e.URL()
		checkRefusal(t, g.attest(body), 401, protocol.AttestationError, "no longer accepts")
	}
	g.url = b.URL()
	if r := g.attest(body); r.status != http.StatusOK {
		t.Fatalf("attest on the second replica: %d %s", r.status, r.body)
	}
	if got := g.open(g.get(secretPath, true, false)); !bytes.Equal(got, secret) {
		t.Fatalf("resource = %q", got)
	}
	// The rotated replica accepts what the others seal with k1 (its previous key)...
	g2 := newGuest(t, a.URL())
	g2.auth(protocol.Version, kbstest.TEE)
	g2.url = rotated.URL()
	if r := g2.attest(g2.attestation(g2.nonce, &kbstest.Attester{}, nil)); r.status != http.StatusOK {
		t.Fatalf("attest on the rotated replica: %d %s", r.status, r.body)
	}
	// ... and seals with k2, which a replica still on k1 alone refuses.
	g3 := newGuest(t, rotated.URL())
	g3.auth(protocol.Version, kbstest.TEE)
	g3.url = a.URL()
	checkRefusal(t, g3.attest(g3.attestation(g3.nonce, &kbstest.Attester{}, nil)), 401, protocol.AttestationError, "no longer accepts")
}

func TestLoadSessionKeys(t *testing.T) {
	k := randomKey(t)
	f := writeKeyFile(t, k)
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := kbs.LoadSessionKeys(f); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a 0644 key file: %v", err)
	}
	if _, err := kbs.LoadSessionKeys(writeKeyFile(t, k[:31])); err == nil || !strings.Contains(err.Error(), "31 bytes") {
		t.Fatalf("a short key file: %v", err)
	}
	if _, err := kbs.LoadSessionKeys(writeKeyFile(t, k, k, k)); err == nil {
		t.Fatal("three keys accepted")
	}
	if _, err := kbs.New(kbs.Options{SessionKeys: [][]byte{k[:16]}}); err == nil {
		t.Fatal("a 16-byte key accepted")
	}
}

// Each client has its own bucket on auth and on attest; over it, 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	clk := &clock{now: time.Now()}
	env := kbstest.NewServer(t, func(o *kbs.Options) { o.AuthRate, o.AuthBurst, o.Now = 1, 3, clk.Now })
	var gs []*guest
	for i := range 3 {
		g := newGuest(t, env.URL())
		if r := g.auth(protocol.Version, kbstest.TEE); r.status != http.StatusOK {
			t.Fatalf("auth %d: %d %s", i, r.status, r.body)
		}
		gs = append(gs, g)
	}
	req, _ := http.NewRequest("POST", env.URL()+"/kbs/v0/auth", strings.NewReader(`{"version":"0.4.0","tee":"sample"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("auth over the limit: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	checkRefusal(t, newGuest(t, env.URL()).auth(protocol.Version, kbstest.TEE), 429, protocol.AttestationError, "too many requests")
	// Attest has its own bucket.
	for i, g := range gs {
		if r := g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil)); r.status != http.StatusOK {
			t.Fatalf("attest %d: %d %s", i, r.status, r.body)
		}
	}
	checkRefusal(t, gs[0].attest(nil), 429, protocol.AttestationError, "too many requests")
	clk.advance(2 * time.Second)
	if r := newGuest(t, env.URL()).auth(protocol.Version, kbstest.TEE); r.status != http.StatusOK {
		t.Fatalf("auth once the bucket refilled: %d %s", r.status, r.body)
	}
	m := do(t, "GET", env.URL()+"/metrics", nil, nil)
	if !strings.Contains(string(m.body), `veil_kbs_denials_total{endpoint="auth",reason="rate_limited"} 2`) {
		t.Errorf("metrics lack the rate-limited denials:\n%s", m.body)
	}
}

// The spent-nonce record holds a nonce only until its challenge expires: sustained handshakes
// are bounded by rate × lifetime, not by their number. Full of live nonces, attest says 503
// with Retry-After and the challenge stays unspent.
func TestSustainedHandshakes(t *testing.T) {
	const max = 100
	clk := &clock{now: time.Now()}
	env := kbstest.NewServer(t, func(o *kbs.Options) { o.MaxSpentNonces, o.Now = max, clk.Now })
	env.Attestation.Now = clk.Now
	putResource(t, env, secretPath, secret)
	step := kbs.DefaultSessionTTL / (max / 2)
	for i := range 2000 {
		g := newGuest(t, env.URL())
		g.handshake()
		if i%100 == 0 {
			g.open(g.get(secretPath, true, false))
		}
		clk.advance(step)
	}
	var gs []*guest
	for range max + 1 {
		g := newGuest(t, env.URL())
		g.auth(protocol.Version, kbstest.TEE)
		gs = append(gs, g)
	}
	// Up to ~50 nonces of the loop are live still: room for about 50 more.
	var full reply
	var last *guest
	for _, g := range gs {
		r := g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil))
		if r.status != http.StatusOK {
			full, last = r, g
			break
		}
	}
	if last == nil {
		t.Fatal("the spent-nonce record took more than its bound")
	}
	checkRefusal(t, full, 503, protocol.AttestationError, "retry later")
	clk.advance(kbs.DefaultSessionTTL / 2)
	if r := last.attest(last.attestation(last.nonce, &kbstest.Attester{}, nil)); r.status != http.StatusOK {
		t.Fatalf("attest once nonces expired: %d %s", r.status, r.body)
	}
}

// Retry-After of the full record: the seconds until its oldest nonce expires.
func TestSpentFullRetryAfter(t *testing.T) {
	clk := &clock{now: time.Now()}
	env := kbstest.NewServer(t, func(o *kbs.Options) { o.MaxSpentNonces, o.Now = 1, clk.Now })
	env.Attestation.Now = clk.Now
	newGuest(t, env.URL()).handshake()
	clk.advance(time.Minute)
	g := newGuest(t, env.URL())
	g.auth(protocol.Version, kbstest.TEE)
	hdr := map[string]string{"Cookie": protocol.SessionCookie + "=" + g.cookie}
	req, _ := http.NewRequest("POST", env.URL()+"/kbs/v0/attest", bytes.NewReader(g.attestation(g.nonce, &kbstest.Attester{}, nil)))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := strconv.Itoa(int((kbs.DefaultSessionTTL - time.Minute).Seconds()))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != want {
		t.Fatalf("attest with the record full: %d, Retry-After %q, want 503 and %s", resp.StatusCode, resp.Header.Get("Retry-After"), want)
	}
}

func heapInuseNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
