package cdh_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/internal/faultserver"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

func TestMain(m *testing.M) {
	log.L.Logger.SetOutput(io.Discard)
	os.Exit(m.Run())
}

var fastRetry = kbsclient.Retry{Attempts: 2, Initial: time.Millisecond, Max: 2 * time.Millisecond}

func newHub(t *testing.T, url string, measurement [48]byte, roots *x509.CertPool) *cdh.Hub {
	t.Helper()
	att, init := kbstest.Guest(t, measurement)
	h, err := cdh.New(cdh.Config{URL: url, RootCAs: roots, Attester: att, InitData: init, Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestGetResource: one attestation serves every request; the secrets are the stored ones,
// and the logs (at debug level) never hold them.
func TestGetResource(t *testing.T) {
	var logs bytes.Buffer
	log.L.Logger.SetOutput(&logs)
	log.L.Logger.SetLevel(logrus.DebugLevel)
	t.Cleanup(func() { log.L.Logger.SetOutput(io.Discard); log.L.Logger.SetLevel(logrus.InfoLevel) })

	k := kbstest.NewKBS(t, true)
	k.Put(t, "default/key/1", []byte("secret-one-4f1c"))
	k.Put(t, "default/key/2", []byte("secret-two-9e2a"))
	h := newHub(t, k.URL(), kbstest.Measurement, nil)
	ctx := context.Background()
	for i, tc := range []struct{ uri, want string }{
		{"kbs:///default/key/1", "secret-one-4f1c"},
		{"kbs:///default/key/2", "secret-two-9e2a"},
		{"kbs:///default/key/1", "secret-one-4f1c"},
	} {
		got, err := h.GetResource(ctx, tc.uri)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if string(got) != tc.want {
			t.Fatalf("%d: %s = %q", i, tc.uri, got)
		}
	}
	if n, m := k.Count("/kbs/v0/auth"), k.Count("/kbs/v0/attest"); n != 1 || m != 1 {
		t.Errorf("auth %d, attest %d: want one handshake for three resources", n, m)
	}
	if h.KBS() != k.URL() {
		t.Errorf("KBS() = %q", h.KBS())
	}
	if s := logs.String(); strings.Contains(s, "secret-") || !strings.Contains(s, "resource obtained") {
		t.Errorf("logs hold a secret or nothing:\n%s", s)
	}
}

// TestReattest: when the KBS no longer accepts the token (a restart with a new token key),
// the hub attests again, once, and goes on with the new token.
func TestReattest(t *testing.T) {
	k := kbstest.NewKBS(t, true)
	k.Put(t, "default/key/1", []byte("kek"))
	h := newHub(t, k.URL(), kbstest.Measurement, nil)
	ctx := context.Background()
	if _, err := h.GetResource(ctx, "kbs:///default/key/1"); err != nil {
		t.Fatal(err)
	}
	k.Restart(t)
	for range 2 {
		if got, err := h.GetResource(ctx, "kbs:///default/key/1"); err != nil || string(got) != "kek" {
			t.Fatalf("after restart: %q, %v", got, err)
		}
	}
	if n := k.Count("/kbs/v0/attest"); n != 2 {
		t.Errorf("attest %d times, want 2 (one after the restart)", n)
	}
}

// TestRefusals: each refusal names the URI, the KBS and what the KBS said.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	trusting := kbstest.NewKBS(t, true)
	trusting.Put(t, "default/key/1", []byte("kek"))
	untrusting := kbstest.NewKBS(t, false)
	untrusting.Put(t, "default/key/1", []byte("kek"))
	for _, tc := range []struct {
		name        string
		kbs         *kbstest.KBS
		measurement [48]byte
		uri         string
		op          string
		kind        protocol.ErrorKind
	}{
		{"sim root not trusted", untrusting, kbstest.Measurement, "kbs:///default/key/1", "attest", protocol.AttestationError},
		{"measurement not in the reference values", trusting, [48]byte{1}, "kbs:///default/key/1", "get resource default/key/1", protocol.PolicyDeny},
		{"resource missing", trusting, kbstest.Measurement, "kbs:///default/key/404", "get resource default/key/404", protocol.InvalidRequestPath},
	} {
		h := newHub(t, tc.kbs.URL(), tc.measurement, nil)
		got, err := h.GetResource(ctx, tc.uri)
		var ce *cdh.Error
		var ke *kbsclient.Error
		if got != nil || !errors.As(err, &ce) || !errors.As(err, &ke) {
			t.Errorf("%s: %q, %v", tc.name, got, err)
			continue
		}
		if ke.Op != tc.op || ke.Kind != tc.kind {
			t.Errorf("%s: op %q kind %q, want %q %q (%v)", tc.name, ke.Op, ke.Kind, tc.op, tc.kind, err)
		}
		msg := err.Error()
		for _, want := range []string{tc.uri, tc.kbs.URL(), string(tc.kind)} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q does not say %q", tc.name, msg, want)
			}
		}
	}
	h := newHub(t, trusting.URL(), kbstest.Measurement, nil)
	for _, uri := range []string{"kbs:///default/key", "https://kbs/default/key/1", "kbs:///default/../key"} {
		if _, err := h.GetResource(ctx, uri); err == nil || !strings.Contains(err.Error(), uri) {
			t.Errorf("%s: %v", uri, err)
		}
	}
	att, _ := kbstest.Guest(t, kbstest.Measurement)
	if _, err := cdh.New(cdh.Config{Attester: att}); !errors.Is(err, cdh.ErrNoKBS) {
		t.Errorf("no URL: %v", err)
	}
	if _, err := cdh.New(cdh.Config{URL: "kbs.example:8080", Attester: att}); err == nil {
		t.Error("URL without a scheme accepted")
	}
	if _, err := cdh.New(cdh.Config{URL: trusting.URL()}); err == nil {
		t.Error("no attester accepted")
	}
}

// TestHTTPS: with RootCAs the hub trusts exactly those roots.
func TestHTTPS(t *testing.T) {
	k := kbstest.NewKBS(t, true)
	k.Put(t, "default/key/1", []byte("kek"))
	ts := httptest.NewTLSServer(k.Env.KBS)
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	if got, err := newHub(t, ts.URL, kbstest.Measurement, pool).GetResource(context.Background(), "kbs:///default/key/1"); err != nil || string(got) != "kek" {
		t.Fatalf("with the KBS's root: %q, %v", got, err)
	}
	_, err := newHub(t, ts.URL, kbstest.Measurement, x509.NewCertPool()).GetResource(context.Background(), "kbs:///default/key/1")
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("with another root: %v", err)
	}
}

// TestKBSKilled (issue 12): the guest's hub against a real KBS (sim SNP evidence, the
// built-in verifier) that dies on receiving attest. Back on the same address within the
// retry budget, the hub gets the secret after a whole new handshake; gone for good, the hub
// gives up after its attempts, and the error names the resource, the KBS's URL, and the
// request that failed.
func TestKBSKilled(t *testing.T) {
	k := kbstest.NewKBS(t, true)
	k.Put(t, "default/key/1", []byte("kek"))
	front := faultserver.Start(t, k.Env.KBS)
	att, init := kbstest.Guest(t, kbstest.Measurement)
	retry := kbsclient.Retry{Attempts: 4, Initial: 100 * time.Millisecond, Max: time.Second}
	h, err := cdh.New(cdh.Config{URL: front.URL(), Attester: att, InitData: init, Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	attest := func(r *http.Request) bool { return r.URL.Path == "/kbs/v0/attest" }

	died := front.DieOn(attest, 0)
	go func() {
		<-died
		time.Sleep(200 * time.Millisecond)
		front.Restart(nil)
	}()
	if got, err := h.GetResource(context.Background(), "kbs:///default/key/1"); err != nil || string(got) != "kek" {
		t.Fatalf("with the KBS back after 200 ms: %q, %v (requests %q)", got, err, front.Requests())
	}

	front.DieOn(attest, 0)
	h2, err := cdh.New(cdh.Config{URL: front.URL(), Attester: att, InitData: init, Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h2.GetResource(context.Background(), "kbs:///default/key/1")
	var ce *cdh.Error
	if !errors.As(err, &ce) {
		t.Fatalf("with the KBS gone: %v, want a *cdh.Error", err)
	}
	for _, want := range []string{"kbs:///default/key/1", "KBS " + front.URL() + " handshake: giving up after 4 attempts", "KBS auth", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
