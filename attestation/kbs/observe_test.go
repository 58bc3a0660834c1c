package kbs_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
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
