package kbsclient_test

import (
	"slices"
	"testing"
	"time"

	kbsclient "github.com/veil-runtime/veil/kbs-client"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
)

// BenchmarkHandshake measures full handshakes (auth, attest, resource, decrypt) over loopback
// HTTP with a fresh client and EC key each time, against the fake sample-TEE attestation: the
// cost of the protocol itself, without evidence verification. The attestation package's
// benchmark adds the real verification of sim evidence.
func BenchmarkHandshake(b *testing.B) {
	_, _, hs := setupB(b)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		cl, err := kbsclient.New(hs.URL, &kbstest.Attester{}, kbsclient.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cl.GetResource(b.Context(), "kbs:///default/key/1"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
}

// reportLatency reports handshakes per second and the p50 and p99 latencies.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	b.ReportMetric(float64(len(lat))/sum.Seconds(), "handshakes/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
