package kbsclient_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/internal/faultserver"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// kbsEnv is a real KBS (sample TEE) holding default/key/1.
func kbsEnv(t *testing.T) *kbstest.Env {
	t.Helper()
	env := kbstest.NewServer(t, nil)
	rp, _ := protocol.ParseResourcePath("default/key/1")
	if err := env.Store.Put(context.Background(), rp, []byte("secret default/key/1")); err != nil {
		t.Fatal(err)
	}
	return env
}

// path matches the requests for p.
func path(p string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.URL.Path == p }
}

// faultRetry is a budget of about 0.75–1.5 s of waits: enough for a KBS restarted after
// 200 ms, and short enough for make unit.
var faultRetry = kbsclient.Retry{Attempts: 5, Initial: 100 * time.Millisecond, Max: time.Second}

// TestKBSKilledMidHandshake (issue 12): the KBS dies on receiving attest, after it answered
// auth, so the guest's request gets no reply; it is back on the same address 200 ms later.
// The client must retry the handshake as a whole (a new auth: the challenge of the dead
// session is not reused for a second attest) with backoff, and get the resource. Restarted
// as the same KBS (its session key and token key) or as a new instance: the client needs
// neither.
func TestKBSKilledMidHandshake(t *testing.T) {
	for _, same := range []bool{true, false} {
		t.Run("same instance="+strconv.FormatBool(same), func(t *testing.T) {
			k := faultserver.Start(t, kbsEnv(t).KBS)
			died := k.DieOn(path("/kbs/v0/attest"), 0)
			var next http.Handler // nil: the same KBS
			if !same {
				next = kbsEnv(t).KBS
			}
			go func() {
				<-died
				time.Sleep(200 * time.Millisecond)
				k.Restart(next)
			}()
			cl, err := kbsclient.New(k.URL(), &kbstest.Attester{}, kbsclient.Options{Retry: faultRetry})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := cl.GetResource(t.Context(), "kbs:///default/key/1")
			t.Logf("resource after %v; requests %q", time.Since(start), k.Requests())
			if err != nil || string(got) != "secret default/key/1" {
				t.Fatalf("GetResource with the KBS back within the retry budget: %q, %v", got, err)
			}
			reqs := k.Requests()
			if len(reqs) < 5 || reqs[0] != "POST /kbs/v0/auth" || reqs[1] != "POST /kbs/v0/attest" ||
				reqs[len(reqs)-3] != "POST /kbs/v0/auth" || reqs[len(reqs)-2] != "POST /kbs/v0/attest" {
				t.Errorf("requests %q: want auth, attest (killed), then a whole new handshake and the resource", reqs)
			}
			if d := time.Since(start); d < 200*time.Millisecond {
				t.Errorf("done in %v, before the KBS was back", d)
			}
		})
	}
}

// TestKBSKilledMidResource (issue 12): the KBS dies half way through the reply to a resource
// request (headers and half the JWE sent, then the connection drops), and comes back as a
// new instance (new token key). The client must retry the request rather than fail on the
// truncated reply; the new KBS refuses the old token, so it attests again once and gets the
// resource.
func TestKBSKilledMidResource(t *testing.T) {
	k := faultserver.Start(t, kbsEnv(t).KBS)
	cl, err := kbsclient.New(k.URL(), &kbstest.Attester{}, kbsclient.Options{Retry: faultRetry})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	died := k.DieOn(path("/kbs/v0/resource/default/key/1"), 100)
	next := kbsEnv(t).KBS
	go func() {
		<-died
		time.Sleep(200 * time.Millisecond)
		k.Restart(next)
	}()
	got, err := cl.GetResource(t.Context(), "kbs:///default/key/1")
	if err != nil || string(got) != "secret default/key/1" {
		t.Fatalf("GetResource with the KBS back within the retry budget: %q, %v (requests %q)", got, err, k.Requests())
	}
	n := 0
	for _, r := range k.Requests() {
		if r == "POST /kbs/v0/attest" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d attestations, want 2 (one after the restart): %q", n, k.Requests())
	}
}

// TestKBSGone (issue 12): the KBS dies on receiving attest and never comes back. With the
// default retry budget the client gives up after 5 attempts and 1.5–3 s of backoff, and its
// error names the KBS's address, the request that failed and why.
func TestKBSGone(t *testing.T) {
	k := faultserver.Start(t, kbsEnv(t).KBS)
	k.DieOn(path("/kbs/v0/attest"), 0)
	cl, err := kbsclient.New(k.URL(), &kbstest.Attester{}, kbsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = cl.GetResource(t.Context(), "kbs:///default/key/1")
	d := time.Since(start)
	t.Logf("gave up after %v: %v", d, err)
	if err == nil {
		t.Fatal("GetResource succeeded with the KBS gone")
	}
	for _, want := range []string{"KBS " + k.URL() + " handshake: giving up after 5 attempts", "KBS auth", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if d < 1400*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %v, want the default backoff's 1.5–3 s", d)
	}
	if reqs := k.Requests(); len(reqs) != 2 {
		t.Errorf("requests %q: want auth and the attest it died on", reqs)
	}
}
