package kbs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// handler serves one endpoint; a returned error is sent as the error document.
type handler func(ctx context.Context, w http.ResponseWriter, r *http.Request) error

// Endpoint names, the "endpoint" label of the metrics.
const (
	epAuth        = "auth"
	epAttest      = "attest"
	epResource    = "resource"
	epPutResource = "set-resource"
	epAttPolicy   = "attestation-policy"
	epResPolicy   = "resource-policy"
	epBinding     = "repository-binding"
	epMetrics     = "metrics"
	epHealth      = "health"
	epUnknown     = "unknown"
)

// ServeHTTP routes a request to its endpoint and records its metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.opts.Now()
	endpoint, h := s.route(r)
	switch endpoint {
	case epMetrics:
		s.metricsH.ServeHTTP(w, r)
		return
	case epHealth:
		serveHealth(w)
		return
	}
	ctx := log.WithLogger(r.Context(), log.G(r.Context()).WithFields(log.Fields{
		"endpoint": endpoint, "remote": r.RemoteAddr,
	}))
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	if err := h(ctx, rec, r); err != nil {
		s.writeError(ctx, rec, endpoint, err)
	}
	s.metrics.requests.WithLabelValues(endpoint, strconv.Itoa(rec.code)).Inc()
	s.metrics.latency.WithLabelValues(endpoint).Observe(s.opts.Now().Sub(start).Seconds())
}

// route picks the endpoint. The escaped path is used, so that an encoded "/" or "." can never
// change how a resource path splits; unknown paths and methods are InvalidRequestPath (404).
func (s *Server) route(r *http.Request) (string, handler) {
	p := r.URL.EscapedPath()
	if p == "/metrics" && r.Method == http.MethodGet {
		return epMetrics, nil
	}
	if p == HealthPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		return epHealth, nil
	}
	rest, ok := strings.CutPrefix(p, protocol.PathPrefix+"/")
	if !ok {
		return epUnknown, s.notFound
	}
	switch {
	case rest == "auth" && r.Method == http.MethodPost:
		return epAuth, s.handleAuth
	case rest == "attest" && r.Method == http.MethodPost:
		return epAttest, s.handleAttest
	case rest == "attestation-policy" && r.Method == http.MethodPost:
		return epAttPolicy, s.handleSetAttestationPolicy
	case rest == "resource-policy" && r.Method == http.MethodPost:
		return epResPolicy, s.handleSetResourcePolicy
	case rest == "resource-policy" && r.Method == http.MethodGet:
		return epResPolicy, s.handleGetResourcePolicy
	case strings.HasPrefix(rest, protocol.RepositoryBindingPath[1:]) && r.Method == http.MethodPost:
		return epBinding, s.handleBindRepository
	case strings.HasPrefix(rest, protocol.RepositoryBindingPath[1:]) && r.Method == http.MethodGet:
		return epBinding, s.handleGetRepositoryBinding
	case strings.HasPrefix(rest, "resource/") && r.Method == http.MethodGet:
		return epResource, s.handleGetResource
	case strings.HasPrefix(rest, "resource/") && r.Method == http.MethodPost:
		return epPutResource, s.handlePutResource
	}
	return epUnknown, s.notFound
}

// HealthPath is the health endpoint that liveness and readiness probes call: unauthenticated,
// it reads no state and always answers 200 "ok". The server exists only once veil-kbs has
// set up its data directory and loaded its keys and policies, and it listens only then, so an
// answer means ready as well as alive. It is not counted in the metrics.
const HealthPath = "/healthz"

func serveHealth(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok\n")
}

func (s *Server) notFound(_ context.Context, _ http.ResponseWriter, r *http.Request) error {
	return refuse(protocol.InvalidRequestPath, reasonPath, nil, "request path %s %s is invalid", r.Method, r.URL.EscapedPath())
}

// errTooLarge is wrapped when a body exceeds its limit.
var errTooLarge = errors.New("request body too large")

// readBody reads at most limit bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return body, nil
}

// statusRecorder remembers the status code for the metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}
