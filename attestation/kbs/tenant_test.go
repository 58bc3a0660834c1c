package kbs_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// tenantGuest is a guest launched with initdata body: its token's init_data claim is the
// body's sha256 digest (kbstest's attestation service), which it returns.
func tenantGuest(t *testing.T, url, body string) (*guest, string) {
	t.Helper()
	g := newGuest(t, url)
	if r := g.auth(protocol.Version, kbstest.TEE); r.status != http.StatusOK {
		t.Fatalf("auth: %d %s", r.status, r.body)
	}
	doc := &protocol.InitData{Format: "toml", Body: body}
	if r := g.attest(g.attestation(g.nonce, &kbstest.Attester{}, doc)); r.status != http.StatusOK {
		t.Fatalf("attest: %d %s", r.status, r.body)
	}
	sum := sha256.Sum256([]byte(body))
	return g, hex.EncodeToString(sum[:])
}

func bindRepository(t *testing.T, env *kbstest.Env, repo string, digests ...string) reply {
	t.Helper()
	body := mustJSON(t, protocol.RepositoryBinding{InitData: digests})
	return do(t, "POST", env.URL()+"/kbs/v0/repository-binding/"+repo, body,
		map[string]string{"Authorization": "Bearer " + env.AdminToken(t)})
}

// TestTenantIsolation (issue 12): under the default resource policy a guest of one tenant
// never reads another tenant's repository. A repository is released only to guests whose
// measured initdata digest the administrator bound to it; an unbound repository to nobody;
// the shared "default" repository to every affirming guest.
func TestTenantIsolation(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	for _, p := range []string{"default/key/1", "tenanta/key/1", "tenantb/key/1"} {
		putResource(t, env, p, []byte("secret of "+p))
	}
	a, digestA := tenantGuest(t, env.URL(), "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package a\"\n")
	b, digestB := tenantGuest(t, env.URL(), "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package b\"\n")

	// Nothing bound: only the shared repository.
	for _, g := range []*guest{a, b} {
		if got := string(g.open(g.get("default/key/1", true, false))); got != "secret of default/key/1" {
			t.Fatalf("default/key/1: %q", got)
		}
		checkRefusal(t, g.get("tenantb/key/1", true, false), 401, protocol.PolicyDeny, "denied by the resource policy")
	}

	if r := bindRepository(t, env, "tenantb", digestB); r.status != http.StatusOK {
		t.Fatalf("bind tenantb: %d %s", r.status, r.body)
	}
	if got := string(b.open(b.get("tenantb/key/1", true, false))); got != "secret of tenantb/key/1" {
		t.Fatalf("tenant B's guest reads %q", got)
	}
	// Tenant A's guest, attested and affirming, is refused tenant B's secret, by cookie and by
	// bearer token, and its own unbound repository too.
	checkRefusal(t, a.get("tenantb/key/1", true, false), 401, protocol.PolicyDeny, "denied by the resource policy")
	checkRefusal(t, a.get("tenantb/key/1", false, true), 401, protocol.PolicyDeny, "denied by the resource policy")
	checkRefusal(t, a.get("tenanta/key/1", true, false), 401, protocol.PolicyDeny, "denied by the resource policy")
	if r := bindRepository(t, env, "tenanta", digestA); r.status != http.StatusOK {
		t.Fatalf("bind tenanta: %d %s", r.status, r.body)
	}
	if got := string(a.open(a.get("tenanta/key/1", true, false))); got != "secret of tenanta/key/1" {
		t.Fatalf("tenant A's guest reads %q", got)
	}
	checkRefusal(t, b.get("tenanta/key/1", true, false), 401, protocol.PolicyDeny, "denied by the resource policy")

	// The administrator reads a binding back; an empty list removes it.
	r := do(t, "GET", env.URL()+"/kbs/v0/repository-binding/tenantb", nil, map[string]string{"Authorization": "Bearer " + env.AdminToken(t)})
	var got protocol.RepositoryBinding
	if r.status != http.StatusOK || json.Unmarshal(r.body, &got) != nil || len(got.InitData) != 1 || got.InitData[0] != digestB {
		t.Fatalf("GET binding: %d %s", r.status, r.body)
	}
	if r := bindRepository(t, env, "tenantb"); r.status != http.StatusOK {
		t.Fatalf("unbind: %d %s", r.status, r.body)
	}
	checkRefusal(t, b.get("tenantb/key/1", true, false), 401, protocol.PolicyDeny, "denied by the resource policy")
}

// TestBindRefusals: a bad binding request is refused, says what was wrong, and changes nothing.
func TestBindRefusals(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	good := hex.EncodeToString(make([]byte, 32))
	if r := bindRepository(t, env, "t", good); r.status != http.StatusOK {
		t.Fatalf("bind: %d %s", r.status, r.body)
	}
	admin := map[string]string{"Authorization": "Bearer " + env.AdminToken(t)}
	for name, tc := range map[string]struct {
		repo, body, detail string
	}{
		"not hex":          {"t", `{"init_data":["zz"]}`, `want the hex of a digest of one of ["sha256" "sha384" "sha512"]`},
		"short digest":     {"t", `{"init_data":["abcd"]}`, `want the hex of a digest of one of ["sha256" "sha384" "sha512"]`},
		"not JSON":         {"t", `init_data`, "request body"},
		"bad repository":   {"..", `{"init_data":["` + good + `"]}`, "invalid resource path"},
		"slash in repo":    {"a%2Fb", `{"init_data":["` + good + `"]}`, "invalid resource path"},
		"empty repository": {"", `{"init_data":["` + good + `"]}`, "invalid resource path"},
	} {
		t.Run(name, func(t *testing.T) {
			r := do(t, "POST", env.URL()+"/kbs/v0/repository-binding/"+tc.repo, []byte(tc.body), admin)
			if r.status == http.StatusOK {
				t.Fatalf("accepted: %s", r.body)
			}
			if e := r.errInfo(t); !strings.Contains(e.Detail, tc.detail) {
				t.Fatalf("detail %q, want %q", e.Detail, tc.detail)
			}
		})
	}
	if b := env.Policy.Binding("t"); len(b) != 1 || b[0] != good {
		t.Fatalf("binding after refusals: %v", b)
	}
}
