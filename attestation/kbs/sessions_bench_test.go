package kbs_test

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// BenchmarkAuth is the cost of a challenge: one POST /kbs/v0/auth over a keep-alive loopback
// connection, nonce made and sealed into the cookie. It reports the heap in use that the
// server holds afterwards per request (heap-B/auth), which should be about zero.
func BenchmarkAuth(b *testing.B) {
	env := kbstest.NewServer(b, nil)
	body := []byte(`{"version":"0.4.0","tee":"sample","extra-params":{}}`)
	hc := &http.Client{}
	before := heapInuseNow()
	start := time.Now()
	n := 0
	for b.Loop() {
		resp, err := hc.Post(env.URL()+"/kbs/v0/auth", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("auth: %d", resp.StatusCode)
		}
		n++
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "auth/s")
	b.ReportMetric(float64(int64(heapInuseNow())-int64(before))/float64(n), "heap-B/auth")
}

// BenchmarkSessionHandshakes is full handshakes (auth, attest, resource, decrypt) against the
// fake sample-TEE attestation, with a fresh client and key each: the session machinery's cost
// without evidence verification, from one guest at a time and from 8 at once. The per-client
// limits are off (kbstest); the spent-nonce record is at its default bound. Guests and KBS
// share the machine's cores; cpu-ms/handshake is the CPU time of both per handshake.
func BenchmarkSessionHandshakes(b *testing.B) {
	for _, clients := range []int{1, 8} {
		name := map[int]string{1: "sequential", 8: "8-clients"}[clients]
		b.Run(name, func(b *testing.B) {
			env := kbstest.NewServer(b, nil)
			putResourceB(b, env)
			var n atomic.Int64
			start, cpu0 := time.Now(), cpuTime(b)
			work := make(chan struct{})
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					// Each guest keeps its connection: the figure is the server's, not
					// the cost of new loopback connections.
					hc := &http.Client{Transport: &http.Transport{}}
					defer hc.CloseIdleConnections()
					for range work {
						cl, err := kbsclient.New(env.URL(), &kbstest.Attester{}, kbsclient.Options{HTTPClient: hc})
						if err == nil {
							_, err = cl.GetResource(b.Context(), "kbs:///default/key/1")
						}
						if err != nil {
							b.Error(err)
							continue
						}
						n.Add(1)
					}
				})
			}
			for b.Loop() {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "handshakes/s")
			if n.Load() > 0 {
				b.ReportMetric(ms((cpuTime(b)-cpu0)/time.Duration(n.Load())), "cpu-ms/handshake")
			}
		})
	}
}

// cpuTime is the CPU time of the process (guests and KBS together): unlike the wall-clock
// rate it holds when other work shares the machine.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func putResourceB(b *testing.B, env *kbstest.Env) {
	req, _ := http.NewRequest("POST", env.URL()+"/kbs/v0/resource/default/key/1", bytes.NewReader([]byte("s")))
	req.Header.Set("Authorization", "Bearer "+env.AdminToken(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("set resource: %v %v", resp, err)
	}
	resp.Body.Close()
}
