package kbsclient_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// killableKBS serves a real KBS handler (kbstest's) on a loopback address that stays the same
// when the server is killed and started again, possibly as another KBS instance.
type killableKBS struct {
	t    *testing.T
	addr string

	mu     sync.Mutex
	ln     net.Listener
	srv    *http.Server
	paths  []string                // requests received, in order ("POST /kbs/v0/auth")
	dieOn  string                  // the server dies on receiving the first request to this path
	died   chan struct{}           // closed when it has died
	handle func(*http.Request) int // >0: answer with that many bytes of the real reply, then die
}

func newKillableKBS(t *testing.T, h http.Handler) *killableKBS {
	t.Helper()
	k := &killableKBS{t: t}
	k.start("127.0.0.1:0", h)
	t.Cleanup(k.kill)
	return k
}

func (k *killableKBS) url() string { return "http://" + k.addr }

// start serves h on addr.
func (k *killableKBS) start(addr string, h http.Handler) {
	k.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		k.t.Errorf("KBS: listen on %s again: %v", addr, err)
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.paths = append(k.paths, r.Method+" "+r.URL.Path)
		die := k.dieOn != "" && r.URL.Path == k.dieOn
		partial := k.handle
		k.mu.Unlock()
		if !die {
			h.ServeHTTP(w, r)
			return
		}
		n := 0
		if partial != nil {
			n = partial(r)
		}
		if n > 0 {
			// The reply's headers and its first n bytes, as the KBS wrote them, then death.
			rec := &recorder{header: http.Header{}}
			h.ServeHTTP(rec, r)
			for key, v := range rec.header {
				w.Header()[key] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(rec.body)))
			w.WriteHeader(rec.code)
			w.Write(rec.body[:min(n, len(rec.body)-1)])
			w.(http.Flusher).Flush()
		}
		k.kill()
		panic(http.ErrAbortHandler) // the connection is dropped without a reply's end
	}), ErrorLog: log.New(io.Discard, "", 0)}
	k.mu.Lock()
	k.addr, k.ln, k.srv, k.died = ln.Addr().String(), ln, srv, make(chan struct{})
	k.mu.Unlock()
	go srv.Serve(ln)
}

// kill stops listening and drops every connection but the one of a handler that is dying.
func (k *killableKBS) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ln == nil {
		return
	}
	k.ln.Close()
	go k.srv.Close() // Close waits for handlers: not from one
	k.ln, k.dieOn, k.handle = nil, "", nil
	close(k.died)
}

// requests returns the requests received so far.
func (k *killableKBS) requests() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.paths...)
}

// recorder keeps a handler's reply.
type recorder struct {
	header http.Header
	code   int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.body = append(r.body, b...)
	return len(b), nil
}

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
			env := kbsEnv(t)
			k := newKillableKBS(t, env.KBS)
			k.mu.Lock()
			k.dieOn = "/kbs/v0/attest"
			died := k.died
			k.mu.Unlock()
			next := env.KBS
			if !same {
				next = kbsEnv(t).KBS
			}
			go func() {
				<-died
				time.Sleep(200 * time.Millisecond)
				k.start(k.addr, next)
			}()
			cl, err := kbsclient.New(k.url(), &kbstest.Attester{}, kbsclient.Options{Retry: faultRetry})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := cl.GetResource(t.Context(), "kbs:///default/key/1")
			t.Logf("resource after %v; requests %q", time.Since(start), k.requests())
			if err != nil || string(got) != "secret default/key/1" {
				t.Fatalf("GetResource with the KBS back within the retry budget: %q, %v", got, err)
			}
			reqs := k.requests()
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
	env := kbsEnv(t)
	k := newKillableKBS(t, env.KBS)
	cl, err := kbsclient.New(k.url(), &kbstest.Attester{}, kbsclient.Options{Retry: faultRetry})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.dieOn = "/kbs/v0/resource/default/key/1"
	k.handle = func(*http.Request) int { return 100 }
	died := k.died
	k.mu.Unlock()
	next := kbsEnv(t).KBS
	go func() {
		<-died
		time.Sleep(200 * time.Millisecond)
		k.start(k.addr, next)
	}()
	got, err := cl.GetResource(t.Context(), "kbs:///default/key/1")
	if err != nil || string(got) != "secret default/key/1" {
		t.Fatalf("GetResource with the KBS back within the retry budget: %q, %v (requests %q)", got, err, k.requests())
	}
	n := 0
	for _, r := range k.requests() {
		if r == "POST /kbs/v0/attest" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d attestations, want 2 (one after the restart): %q", n, k.requests())
	}
}

// TestKBSGone (issue 12): the KBS dies on receiving attest and never comes back. With the
// default retry budget the client gives up after 5 attempts and 1.5–3 s of backoff, and its
// error names the KBS's address, the request that failed and why.
func TestKBSGone(t *testing.T) {
	env := kbsEnv(t)
	k := newKillableKBS(t, env.KBS)
	k.mu.Lock()
	k.dieOn = "/kbs/v0/attest"
	k.mu.Unlock()
	cl, err := kbsclient.New(k.url(), &kbstest.Attester{}, kbsclient.Options{})
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
	for _, want := range []string{"KBS " + k.url() + " handshake: giving up after 5 attempts", "KBS auth", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if d < 1400*time.Millisecond || d > 5*time.Second {
		t.Errorf("gave up after %v, want the default backoff's 1.5–3 s", d)
	}
	if reqs := k.requests(); len(reqs) != 2 {
		t.Errorf("requests %q: want auth and the attest it died on", reqs)
	}
}
