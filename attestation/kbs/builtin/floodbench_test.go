package builtin_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/sim"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// BenchmarkGuestDuringFlood is issue 12's flood figure: a sim SNP guest's full handshake
// (real verification) while 4 flooders from another address send unauthenticated auth
// requests as fast as they can, against the KBS's default per-client limits; the guest's p50
// with the flood over its p50 alone, measured in the same run (20 handshakes each), and the
// flooders' request rate and share of 429s. Every guest handshake must succeed.
func BenchmarkGuestDuringFlood(b *testing.B) {
	env := newKBS(b, true, func(o *kbs.Options) { o.AuthRate = 0 })
	att, init := snpGuest(b, sim.SNPLaunch{}, initdataBody)
	handshakes := func(n int) []time.Duration {
		var lat []time.Duration
		for range n {
			start := time.Now()
			cl, err := kbsclient.New(env.URL(), att, kbsclient.Options{InitData: init, Retry: kbsclient.Retry{Attempts: 1}})
			if err == nil {
				_, err = cl.GetResource(context.Background(), "kbs:///default/key/1")
			}
			if err != nil {
				b.Fatalf("the guest's handshake: %v", err)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat
	}
	handshakes(2) // warm up
	alone := handshakes(20)

	ctx, cancel := context.WithCancel(context.Background())
	var sent, limited atomic.Int64
	var wg sync.WaitGroup
	body := []byte(`{"version":"0.4.0","tee":"snp","extra-params":{}}`)
	for range 4 {
		wg.Go(func() {
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
			defer hc.CloseIdleConnections()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, env.URL()+"/kbs/v0/auth", bytes.NewReader(body))
				resp, err := hc.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent.Add(1)
				if resp.StatusCode == http.StatusTooManyRequests {
					limited.Add(1)
				}
			}
		})
	}
	start := time.Now()
	flooded := handshakes(20)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	b.ReportMetric(ms(alone[len(alone)/2]), "alone-p50-ms")
	b.ReportMetric(ms(flooded[len(flooded)/2]), "flooded-p50-ms")
	b.ReportMetric(float64(flooded[len(flooded)/2])/float64(alone[len(alone)/2]), "flooded/alone")
	b.ReportMetric(float64(sent.Load())/elapsed.Seconds(), "flood-req/s")
	if sent.Load() > 0 {
		b.ReportMetric(100*float64(limited.Load())/float64(sent.Load()), "flood-429-%")
	}
}
