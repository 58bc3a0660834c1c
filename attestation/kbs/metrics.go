package kbs

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus collectors, all prefixed veil_kbs_.
type metrics struct {
	requests     *prometheus.CounterVec   // endpoint, code
	latency      *prometheus.HistogramVec // endpoint
	attestations *prometheus.CounterVec   // tee, result
	denials      *prometheus.CounterVec   // endpoint, reason
	released     prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, s *Server) (*metrics, http.Handler, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_kbs_requests_total", Help: "KBS requests by endpoint and HTTP status code.",
		}, []string{"endpoint", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "veil_kbs_request_duration_seconds", Help: "KBS request latency by endpoint.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"endpoint"}),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_kbs_attestations_total", Help: "Attestations by TEE and result (success, failure).",
		}, []string{"tee", "result"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "veil_kbs_denials_total", Help: "Refused requests by endpoint and reason.",
		}, []string{"endpoint", "reason"}),
		released: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "veil_kbs_resources_released_total", Help: "Resources sent (sealed) to attested clients.",
		}),
	}
	spent := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "veil_kbs_spent_nonces", Help: "Challenge nonces recorded as spent (until their challenge expires).",
	}, func() float64 { return float64(s.spent.len()) })
	clients := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "veil_kbs_rate_limited_clients", Help: "Clients (source addresses) tracked by the auth and attest limiters.",
	}, func() float64 {
		if s.authLim == nil {
			return 0
		}
		return float64(s.authLim.len() + s.attLim.len())
	})
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.attestations, m.denials, m.released, spent, clients} {
		if err := reg.Register(c); err != nil {
			return nil, nil, fmt.Errorf("register KBS metrics: %w", err)
		}
	}
	// The Go and process collectors may already be registered by the caller.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			if _, ok := err.(prometheus.AlreadyRegisteredError); !ok {
				return nil, nil, fmt.Errorf("register KBS metrics: %w", err)
			}
		}
	}
	return m, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}
