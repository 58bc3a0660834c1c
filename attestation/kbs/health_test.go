package kbs_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// The health endpoint answers GET and HEAD without credentials, sets no cookie, opens no
// session and is not counted in the metrics; other methods and nearby paths are not it.
func TestHealth(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	for _, method := range []string{"GET", "HEAD"} {
		r := do(t, method, env.URL()+kbs.HealthPath, nil, nil)
		if r.status != http.StatusOK || len(r.cookies) != 0 {
			t.Fatalf("%s %s: %d, cookies %v", method, kbs.HealthPath, r.status, r.cookies)
		}
		if want := map[string]string{"GET": "ok\n", "HEAD": ""}[method]; string(r.body) != want {
			t.Errorf("%s %s: body %q, want %q", method, kbs.HealthPath, r.body, want)
		}
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/healthz"}, {"PUT", "/healthz"}, {"GET", "/healthz/"}, {"GET", "/kbs/v0/healthz"},
		{"GET", "/%68ealthz"}, {"GET", "/readyz"},
	} {
		r := do(t, c.method, env.URL()+c.path, nil, nil)
		if r.status != http.StatusNotFound || r.errInfo(t).Kind() != protocol.InvalidRequestPath {
			t.Errorf("%s %s: %d %s, want 404 InvalidRequestPath", c.method, c.path, r.status, r.body)
		}
	}
	m := do(t, "GET", env.URL()+"/metrics", nil, nil)
	for _, line := range strings.Split(string(m.body), "\n") {
		if strings.HasPrefix(line, "veil_kbs_spent_nonces ") && line != "veil_kbs_spent_nonces 0" {
			t.Errorf("the health checks spent nonces: %s", line)
		}
		if strings.Contains(line, `endpoint="health"`) {
			t.Errorf("the health checks are counted: %s", line)
		}
	}
}
