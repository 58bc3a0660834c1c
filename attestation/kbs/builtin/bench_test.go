package builtin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	sevverify "github.com/google/go-sev-guest/verify"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/sim"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// timed adds up the time the KBS spends serving requests.
type timed struct {
	next http.Handler
	ns   atomic.Int64
}

func (h *timed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.next.ServeHTTP(w, r)
	h.ns.Add(int64(time.Since(start)))
}

// bareSNPChecks returns the mean time of the signature checks one SNP handshake needs: ECDSA
// P-384 over the report by the VCEK, the VCEK by the ASK and the ASK by the ARK; and of the
// report signature alone (what remains once the verifier has cached the chain).
func bareSNPChecks(b *testing.B, a *sim.Authority, ev []byte) (full, reportOnly time.Duration) {
	var s evidence.SNP
	if err := json.Unmarshal(ev, &s); err != nil {
		b.Fatal(err)
	}
	const n = 200
	start := time.Now()
	for range n {
		if err := sevverify.SnpReportSignature(s.Report, a.SNP.VCEK); err != nil {
			b.Fatal(err)
		}
		if err := a.SNP.VCEK.CheckSignatureFrom(a.SNP.ASK); err != nil {
			b.Fatal(err)
		}
		if err := a.SNP.ASK.CheckSignatureFrom(a.SNP.ARK); err != nil {
			b.Fatal(err)
		}
	}
	full = time.Since(start) / n
	start = time.Now()
	for range n {
		if err := sevverify.SnpReportSignature(s.Report, a.SNP.VCEK); err != nil {
			b.Fatal(err)
		}
	}
	return full, time.Since(start) / n
}

// BenchmarkHandshakeSimSNP is the full handshake a guest makes for a secret, over loopback
// HTTP with sim SNP evidence: auth, evidence (the sim guest signs a report), attest (verify,
// appraise, issue the token), resource (policy, seal) and decrypt, with a fresh client and key
// each time. It reports handshakes/s and p50/p99 as the guest sees them, the KBS's own time
// per handshake (server-ms), the bare cost of the signature checks measured in the same run
// (bare-ms: report and chain; bare-report-ms: the report alone, as with a warm chain cache) and
// the ratios.
func BenchmarkHandshakeSimSNP(b *testing.B) {
	env := newKBS(b, true)
	srv := &timed{next: env.KBS}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	att, init := snpGuest(b, sim.SNPLaunch{}, initdataBody)
	ev, err := att.Evidence(b.Context(), [64]byte{})
	if err != nil {
		b.Fatal(err)
	}
	bare, bareReport := bareSNPChecks(b, simAuthority(b), ev)
	var lat []time.Duration
	srv.ns.Store(0)
	for b.Loop() {
		start := time.Now()
		cl, err := kbsclient.New(hs.URL, att, kbsclient.Options{InitData: init})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cl.GetResource(b.Context(), "kbs:///default/key/1"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	report(b, lat, time.Duration(srv.ns.Load()), bare, bareReport)
}

func report(b *testing.B, lat []time.Duration, server, bare, bareReport time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	perServer := server / time.Duration(len(lat))
	b.ReportMetric(float64(len(lat))/sum.Seconds(), "handshakes/s")
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(perServer), "server-ms")
	b.ReportMetric(ms(bare), "bare-ms")
	b.ReportMetric(float64(perServer)/float64(bare), "server/bare")
	b.ReportMetric(ms(bareReport), "bare-report-ms")
	b.ReportMetric(float64(perServer)/float64(bareReport), "server/bare-report")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkHandshakeSimSNPParallel is the same with as many concurrent guests as GOMAXPROCS:
// the KBS's throughput on this machine (guests and KBS share its cores).
func BenchmarkHandshakeSimSNPParallel(b *testing.B) {
	env := newKBS(b, true)
	hs := httptest.NewServer(env.KBS)
	defer hs.Close()
	att, init := snpGuest(b, sim.SNPLaunch{}, initdataBody)
	start := time.Now()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cl, err := kbsclient.New(hs.URL, att, kbsclient.Options{InitData: init})
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := cl.GetResource(b.Context(), "kbs:///default/key/1"); err != nil {
				b.Error(err)
				return
			}
			n.Add(1)
		}
	})
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "handshakes/s")
}
