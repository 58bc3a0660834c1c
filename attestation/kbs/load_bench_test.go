package kbs_test

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// loadHandshakes is the load of issue 12: this many full handshakes, from loadClients guests
// at once, on loopback.
const (
	loadHandshakes = 100_000
	loadClients    = 8
)

// BenchmarkHandshakes100k runs 100,000 full handshakes (auth, attest, resource, decrypt;
// the fake sample-TEE attestation, so the figure is the session machinery's) from 8 guests at
// once, each a fresh client and key, whatever b.N is (run it with -benchtime 1x). It reports
// the rate, the guests' p50/p99, and the heap in use after them against before: the KBS keeps
// no session state, so what remains is the bounded record of spent nonces (about 100 bytes a
// handshake here, up to max_spent_nonces) and nothing per session.
func BenchmarkHandshakes100k(b *testing.B) {
	env := kbstest.NewServer(b, nil)
	putResourceB(b, env)
	before := heapInuseNow()
	lat := make([][]time.Duration, loadClients)
	work := make(chan struct{}, loadClients)
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime(b)
	for i := range loadClients {
		wg.Go(func() {
			hc := &http.Client{Transport: &http.Transport{}}
			defer hc.CloseIdleConnections()
			for range work {
				t0 := time.Now()
				cl, err := kbsclient.New(env.URL(), &kbstest.Attester{}, kbsclient.Options{HTTPClient: hc})
				if err == nil {
					_, err = cl.GetResource(b.Context(), "kbs:///default/key/1")
				}
				if err != nil {
					b.Error(err)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	for range loadHandshakes {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime(b)-cpu0
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) != loadHandshakes {
		b.Fatalf("%d of %d handshakes succeeded", len(all), loadHandshakes)
	}
	grown := int64(heapInuseNow()) - int64(before)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "handshakes/s")
	b.ReportMetric(ms(all[len(all)/2]), "p50-ms")
	b.ReportMetric(ms(all[len(all)*99/100]), "p99-ms")
	b.ReportMetric(ms(cpu/time.Duration(len(all))), "cpu-ms/handshake")
	b.ReportMetric(float64(grown)/(1<<20), "heap-MiB-grown")
	b.ReportMetric(float64(grown)/float64(len(all)), "heap-B/handshake")
}
