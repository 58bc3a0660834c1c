package kbs_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/admin"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const secretPath = "default/key/1"

var secret = []byte("the-secret-bytes")

// checkRefusal checks status and error type, and that no resource bytes are in the reply.
func checkRefusal(t *testing.T, r reply, status int, kind protocol.ErrorKind, detail string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d (%s), want %d", r.status, r.body, status)
	}
	e := r.errInfo(t)
	if e.Type != kind.Type() {
		t.Fatalf("error type %q (%s), want %q", e.Type, e.Detail, kind.Type())
	}
	if !strings.Contains(e.Detail, detail) {
		t.Fatalf("detail %q, want it to contain %q", e.Detail, detail)
	}
	if strings.Contains(string(r.body), string(secret)) || strings.Contains(string(r.body), "ciphertext") {
		t.Fatal("a refusal carries the resource")
	}
}

func TestRefusals(t *testing.T) {
	clk := &clock{now: time.Now()}
	env := kbstest.NewServer(t, func(o *kbs.Options) { o.Now = clk.Now })
	env.Attestation.Now = clk.Now
	putResource(t, env, secretPath, secret)
	putResource(t, env, "default/key/2", secret)
	if err := env.Policy.Set(t.Context(), []byte(`package policy
import rego.v1
default allow := false
allow if data["resource-path"] == "/default/key/1"
`)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		run    func(t *testing.T) reply
		status int
		kind   protocol.ErrorKind
		detail string
	}{
		{"protocol version 0.1.0", func(t *testing.T) reply {
			return newGuest(t, env.URL()).auth("0.1.0", kbstest.TEE)
		}, 401, protocol.AttestationError, "version mismatch"},
		{"protocol version 0.4.0 with a suffix", func(t *testing.T) reply {
			return newGuest(t, env.URL()).auth("0.4.0-rc1", kbstest.TEE)
		}, 401, protocol.AttestationError, "version mismatch"},
		{"unknown TEE", func(t *testing.T) reply {
			return newGuest(t, env.URL()).auth(protocol.Version, "snp-but-not-here")
		}, 401, protocol.AttestationError, "not supported"},
		{"auth body not JSON", func(t *testing.T) reply {
			return do(t, "POST", env.URL()+"/kbs/v0/auth", []byte("{"), nil)
		}, 401, protocol.AttestationError, "not a KBS Request"},
		{"attest without cookie", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			body := g.attestation(g.nonce, &kbstest.Attester{}, nil)
			g.cookie = ""
			return g.attest(body)
		}, 401, protocol.AttestationError, "no kbs-session-id cookie"},
		{"attest with an unknown session", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			body := g.attestation(g.nonce, &kbstest.Attester{}, nil)
			g.cookie = strings.Repeat("0", 32)
			return g.attest(body)
		}, 401, protocol.AttestationError, "not one this KBS issues"},
		{"wrong nonce", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			other := base64.StdEncoding.EncodeToString(make([]byte, 32))
			return g.attest(g.attestation(other, &kbstest.Attester{}, nil))
		}, 401, protocol.AttestationError, "nonce"},
		{"second attest on a spent session", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.handshake()
			return g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil))
		}, 401, protocol.AttestationError, "already used"},
		{"attest with the challenge cookie once attested, after a refused attest", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			if r := g.attest(g.attestation("bad", &kbstest.Attester{}, nil)); r.status != http.StatusUnauthorized {
				t.Fatalf("attest with a wrong nonce: %d %s", r.status, r.body)
			}
			// A refused attest does not spend the challenge; a successful one does.
			if r := g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil)); r.status != http.StatusOK {
				t.Fatalf("attest after a refused one: %d %s", r.status, r.body)
			}
			return g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil))
		}, 401, protocol.AttestationError, "already used"},
		{"attest with the token cookie", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.handshake()
			g.cookie = g.session
			return g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil))
		}, 401, protocol.AttestationError, "not one this KBS issues"},
		{"expired session", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			clk.advance(kbs.DefaultSessionTTL + time.Second)
			return g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil))
		}, 401, protocol.AttestationError, "expired"},
		{"report_data does not bind the tee-pubkey", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			flip := func(rd [64]byte) [64]byte { rd[0] ^= 1; return rd }
			r := g.attest(g.attestation(g.nonce, &kbstest.Attester{Tamper: flip}, nil))
			// The KBS handed its own recomputation to verification, not the client's value.
			last := env.Attestation.Last()
			if last.Nonce != g.nonce || string(last.TEEPubKey) != string(g.jwk) {
				t.Errorf("verification got nonce %q key %s", last.Nonce, last.TEEPubKey)
			}
			return r
		}, 401, protocol.AttestationError, "report_data does not bind"},
		{"evidence of another key", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			body := g.attestation(g.nonce, &kbstest.Attester{}, nil) // binds g's key
			other := newGuest(t, env.URL())
			var att protocol.Attestation
			_ = json.Unmarshal(body, &att)
			att.RuntimeData.TEEPubKey = other.jwk
			return g.attest(mustJSON(t, att))
		}, 401, protocol.AttestationError, "report_data does not bind"},
		{"unsupported tee-pubkey", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			g.jwk = json.RawMessage(`{"kty":"oct","k":"AAAA"}`)
			return g.attest(g.attestation(g.nonce, &kbstest.Attester{}, nil))
		}, 401, protocol.AttestationError, "tee-pubkey"},
		{"additional evidence", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			var att protocol.Attestation
			_ = json.Unmarshal(g.attestation(g.nonce, &kbstest.Attester{}, nil), &att)
			att.TEEEvidence.Additional = `{"tdx":{}}`
			return g.attest(mustJSON(t, att))
		}, 401, protocol.AttestationError, "additional_evidence"},
		{"resource the policy does not grant", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.handshake()
			return g.get("default/key/2", true, false)
		}, 401, protocol.PolicyDeny, "denied by the resource policy"},
		{"no cookie and no token", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.handshake()
			return g.get(secretPath, false, false)
		}, 401, protocol.TokenNotFound, "no attested session"},
		{"cookie of a session not attested", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.auth(protocol.Version, kbstest.TEE)
			return g.get(secretPath, true, false)
		}, 401, protocol.TokenNotFound, "no attested session"},
		{"forged bearer token", func(t *testing.T) reply {
			g := newGuest(t, env.URL())
			g.handshake()
			g.token = g.token[:len(g.token)-4] + "AAAA"
			return g.get(secretPath, false, true)
		}, 401, protocol.TokenVerifierError, "token"},
		{"token of another KBS", func(t *testing.T) reply {
			other := kbstest.NewServer(t, nil)
			g := newGuest(t, other.URL())
			g.handshake()
			g.url = env.URL()
			return g.get(secretPath, false, true)
		}, 401, protocol.TokenVerifierError, "token"},
		{"missing resource", func(t *testing.T) reply {
			if err := env.Policy.Set(t.Context(), []byte("package policy\nallow := true\n")); err != nil {
				t.Fatal(err)
			}
			defer env.Policy.Set(t.Context(), []byte("package policy\nimport rego.v1\nallow if data[\"resource-path\"] == \"/default/key/1\"\n"))
			g := newGuest(t, env.URL())
			g.handshake()
			return g.get("default/key/404", true, false)
		}, 404, protocol.InvalidRequestPath, "not found"},
		{"unknown endpoint", func(t *testing.T) reply {
			return do(t, "GET", env.URL()+"/kbs/v0/nothing", nil, nil)
		}, 404, protocol.InvalidRequestPath, "invalid"},
		{"wrong method", func(t *testing.T) reply {
			return do(t, "GET", env.URL()+"/kbs/v0/auth", nil, nil)
		}, 404, protocol.InvalidRequestPath, "invalid"},
		{"outside the prefix", func(t *testing.T) reply {
			return do(t, "GET", env.URL()+"/etc/passwd", nil, nil)
		}, 404, protocol.InvalidRequestPath, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRefusal(t, tt.run(t), tt.status, tt.kind, tt.detail)
		})
	}
}

// Every spelling of a path that leaves repository/type/tag is refused, for readers and for
// the administrator, and nothing is written outside the store.
func TestPathTraversal(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	putResource(t, env, secretPath, secret)
	g := newGuest(t, env.URL())
	g.handshake()
	paths := []string{
		"../../../etc/passwd",
		"default/../key/1",
		"default/key/..",
		"default/key/1/..",
		"%2e%2e/%2e%2e/passwd",
		"default%2Fkey/1/x",
		"default/key/1%2F..%2F..%2Fx",
		"default/key",
		"default/key/1/extra",
		".hidden/key/1",
		"default//1",
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			checkRefusal(t, g.get(p, true, false), 404, protocol.InvalidRequestPath, "invalid")
			r := do(t, "POST", env.URL()+"/kbs/v0/resource/"+p, []byte("x"), map[string]string{"Authorization": "Bearer " + env.AdminToken(t)})
			checkRefusal(t, r, 404, protocol.InvalidRequestPath, "invalid")
		})
	}
}

func TestAdminRefusals(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	wrong, err := admin.Token(otherKey, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	policy := mustJSON(t, map[string]string{"policy": base64.RawURLEncoding.EncodeToString([]byte("package policy\nallow := true\n"))})
	endpoints := []struct {
		method, path string
		body         []byte
	}{
		{"POST", "/kbs/v0/resource/default/key/9", []byte("planted")},
		{"POST", "/kbs/v0/resource-policy", policy},
		{"GET", "/kbs/v0/resource-policy", nil},
		{"POST", "/kbs/v0/attestation-policy", policy},
		{"POST", "/kbs/v0/repository-binding/tenant", []byte(`{"init_data":["` + strings.Repeat("ab", 32) + `"]}`)},
		{"GET", "/kbs/v0/repository-binding/tenant", nil},
	}
	auths := map[string]string{
		"no token":       "",
		"wrong key":      "Bearer " + wrong,
		"not a JWT":      "Bearer hello",
		"basic":          "Basic YWRtaW46YWRtaW4=",
		"attest token":   "Bearer " + func() string { g := newGuest(t, env.URL()); g.handshake(); return g.token }(),
		"empty bearer":   "Bearer ",
		"lowercase auth": "bearer " + env.AdminToken(t),
	}
	for _, ep := range endpoints {
		for name, auth := range auths {
			t.Run(ep.method+" "+ep.path+" "+name, func(t *testing.T) {
				hdr := map[string]string{}
				if auth != "" {
					hdr["Authorization"] = auth
				}
				checkRefusal(t, do(t, ep.method, env.URL()+ep.path, ep.body, hdr), 401, protocol.AdminAuthAccess, "admin access denied")
			})
		}
	}
	if _, err := env.Store.Get(t.Context(), protocol.ResourcePath{Repository: "default", Type: "key", Tag: "9"}); err == nil {
		t.Fatal("a refused administrator stored a resource")
	}
	if b := env.Policy.Binding("tenant"); b != nil {
		t.Fatalf("a refused administrator bound a repository: %v", b)
	}
	if string(env.Policy.Source()) == "package policy\nallow := true\n" || env.Attestation.Policy("default") != nil {
		t.Fatal("a refused administrator changed a policy")
	}
}

func TestAdmin(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	bearer := map[string]string{"Authorization": "Bearer " + env.AdminToken(t)}
	src := "package policy\nimport rego.v1\nallow if input.submods.cpu0[\"ear.status\"] == \"affirming\"\n"
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.StdEncoding} {
		body := mustJSON(t, map[string]string{"policy": enc.EncodeToString([]byte(src))})
		if r := do(t, "POST", env.URL()+"/kbs/v0/resource-policy", body, bearer); r.status != 200 {
			t.Fatalf("set resource policy: %d %s", r.status, r.body)
		}
	}
	r := do(t, "GET", env.URL()+"/kbs/v0/resource-policy", nil, bearer)
	if got, _ := base64.RawURLEncoding.DecodeString(string(r.body)); string(got) != src {
		t.Fatalf("get resource policy: %d %q", r.status, r.body)
	}
	bad := mustJSON(t, map[string]string{"policy": base64.RawURLEncoding.EncodeToString([]byte("package policy\nallow if {"))})
	checkRefusal(t, do(t, "POST", env.URL()+"/kbs/v0/resource-policy", bad, bearer), 401, protocol.PluginInternalError, "resource policy")
	checkRefusal(t, do(t, "POST", env.URL()+"/kbs/v0/resource-policy", []byte(`{"policy":"***"}`), bearer), 401, protocol.SerdeError, "base64")

	att := mustJSON(t, map[string]string{"type": "rego", "policy_id": "snp", "policy": base64.RawURLEncoding.EncodeToString([]byte("package policy\n"))})
	if r := do(t, "POST", env.URL()+"/kbs/v0/attestation-policy", att, bearer); r.status != 200 {
		t.Fatalf("set attestation policy: %d %s", r.status, r.body)
	}
	if string(env.Attestation.Policy("snp")) != "package policy\n" {
		t.Fatal("the attestation policy did not reach the attestation service")
	}
	big := make([]byte, kbs.DefaultMaxResourceBytes+1)
	checkRefusal(t, do(t, "POST", env.URL()+"/kbs/v0/resource/default/key/big", big, bearer), 401, protocol.PluginInternalError, "too large")
}

func TestBodyLimit(t *testing.T) {
	env := kbstest.NewServer(t, func(o *kbs.Options) { o.MaxBodyBytes = 4096 })
	big := mustJSON(t, protocol.Request{Version: protocol.Version, TEE: kbstest.TEE, ExtraParams: mustJSON(t, strings.Repeat("x", 5000))})
	checkRefusal(t, do(t, "POST", env.URL()+"/kbs/v0/auth", big, nil), 401, protocol.AttestationError, "too large")
}
