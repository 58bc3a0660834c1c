package builtin_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/sim"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// flood sends n unauthenticated auth requests over one keep-alive connection from the local
// address src and counts the replies by status.
func flood(tb testing.TB, url, src string, n int) map[int]int {
	tb.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	body := []byte(`{"version":"0.4.0","tee":"snp","extra-params":{}}`)
	codes := map[int]int{}
	for range n {
		resp, err := hc.Post(url+"/kbs/v0/auth", "application/json", bytes.NewReader(body))
		if err != nil {
			tb.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	return codes
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// The flood of issue 12: unauthenticated auth requests used to fill the session table and
// lock guests out for a session lifetime. Now auth keeps nothing: 20,000 of them (limits off)
// leave the heap where it was and a sim SNP guest attests right after; with the per-client
// limits on, a flooding address gets 429 and another address is served.
func TestAuthFlood(t *testing.T) {
	env := newKBS(t, true)
	att, init := snpGuest(t, sim.SNPLaunch{}, initdataBody)
	getSecret := func(url, src string) error {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
		cl, err := kbsclient.New(url, att, kbsclient.Options{InitData: init, HTTPClient: hc, Retry: kbsclient.Retry{Attempts: 1}})
		if err != nil {
			return err
		}
		got, err := cl.GetResource(context.Background(), "kbs:///default/key/1")
		if err == nil && string(got) != "the secret" {
			err = fmt.Errorf("resource %q", got)
		}
		return err
	}
	// Warm up (first handshake, connection pools, lazily made buffers) before measuring.
	if err := getSecret(env.URL(), "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	before := heapInuse()
	start := time.Now()
	codes := flood(t, env.URL(), "127.0.0.1", 20000)
	elapsed := time.Since(start)
	grown := int64(heapInuse()) - int64(before)
	t.Logf("20000 auth in %s (%.0f/s), heap in use %+.1f MiB", elapsed.Round(time.Millisecond),
		20000/elapsed.Seconds(), float64(grown)/(1<<20))
	if codes[http.StatusOK] != 20000 {
		t.Fatalf("flood replies %v, want 20000 × 200", codes)
	}
	if grown > 20<<20 {
		t.Fatalf("the heap grew by %d bytes over 20,000 auth requests", grown)
	}
	if err := getSecret(env.URL(), "127.0.0.1"); err != nil {
		t.Fatalf("a guest after the flood: %v", err)
	}

	// The same KBS with the default per-client limits: the flooding address is held to its
	// burst, another address gets its secret at once.
	limited := newKBS(t, true, func(o *kbs.Options) { o.AuthRate = 0 })
	start = time.Now()
	codes = flood(t, limited.URL(), "127.0.0.2", 2000)
	allowed := kbs.DefaultAuthBurst + int(kbs.DefaultAuthRate*time.Since(start).Seconds()) + 1
	if codes[http.StatusOK] > allowed || codes[http.StatusOK]+codes[http.StatusTooManyRequests] != 2000 {
		t.Fatalf("limited flood replies %v, want at most %d × 200, the rest 429", codes, allowed)
	}
	if err := getSecret(limited.URL(), "127.0.0.1"); err != nil {
		t.Fatalf("a guest from another address during the flood: %v", err)
	}
}
