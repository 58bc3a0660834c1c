// Package faultserver serves a real HTTP handler (a registry, a KBS) on loopback in a way a
// test can kill in the middle of a request and start again on the same address, for the
// fault tests of issue 12 (docs/testing.md): the handler is the real thing; only its death
// is staged. It is for tests only.
package faultserver

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// Server is a handler on a loopback address that survives Kill and Restart.
type Server struct {
	tb   testing.TB
	addr string // 127.0.0.1:port, the same after a Restart

	mu      sync.Mutex
	h       http.Handler
	ln      net.Listener // nil while dead
	srv     *http.Server
	reqs    []string // "METHOD /path" of every request received
	match   func(*http.Request) bool
	partial int
	died    chan struct{}
	over    bool // the test has ended
}

// Start serves h on a new loopback port. The server is killed at the end of the test.
func Start(tb testing.TB, h http.Handler) *Server {
	tb.Helper()
	return StartOn(tb, "127.0.0.1:0", h)
}

// StartOn serves h on addr ("0.0.0.0:0": a new port on every host address, for a guest that
// reaches the host on a bridge). The server is killed at the end of the test.
func StartOn(tb testing.TB, addr string, h http.Handler) *Server {
	tb.Helper()
	s := &Server{tb: tb, addr: addr}
	s.mu.Lock()
	err := s.listen(h)
	s.mu.Unlock()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.mu.Lock()
		s.over = true // a Restart still under way in a goroutine does nothing
		s.mu.Unlock()
		s.Kill()
	})
	return s
}

// Addr is host:port, as it listens.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is http://host:port.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Port is the port it listens on, the same after a Restart.
func (s *Server) Port() int {
	_, port, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(port)
	return n
}

// Restart serves h (nil: the handler it served before) on the same address again. It may be
// called from any goroutine; a failure to listen is reported with tb.Errorf. Once the test
// has ended it does nothing.
func (s *Server) Restart(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock() // held while reporting, so the report cannot come after the test's end
	if err := s.listen(h); err != nil {
		s.tb.Errorf("faultserver: restart on %s: %v", s.addr, err)
	}
}

// listen serves h on s.addr. Call with s.mu held.
func (s *Server) listen(h http.Handler) error {
	if s.ln != nil || s.over {
		return nil // alive, or the test is over
	}
	if h == nil {
		h = s.h
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.addr, s.h, s.ln, s.died = ln.Addr().String(), h, ln, make(chan struct{})
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ErrorLog: log.New(io.Discard, "", 0)}
	go s.srv.Serve(ln)
	return nil
}

// DieOn arms the server: the next request for which match is true gets the reply's status,
// headers (with its full Content-Length) and first partial bytes (none when partial is 0;
// always at least one byte short of the reply), then the server stops listening and drops
// the connection, as a process killed at that moment would. The channel is closed once it
// has died.
func (s *Server) DieOn(match func(*http.Request) bool, partial int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.match, s.partial = match, partial
	return s.died
}

// Kill stops the server at once: no new connection, and every open one is closed.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return
	}
	s.ln.Close()
	go s.srv.Close() // it waits for running handlers: not from one
	s.ln, s.match = nil, nil
	close(s.died)
}

// Requests returns "METHOD /path" of every request received so far, in order.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Method+" "+r.URL.Path)
	h, partial := s.h, s.partial
	die := s.match != nil && s.match(r)
	if die {
		s.match = nil
	}
	s.mu.Unlock()
	if !die {
		h.ServeHTTP(w, r)
		return
	}
	if partial > 0 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body[:max(0, min(partial, len(body)-1))])
		w.(http.Flusher).Flush()
	}
	s.Kill()
	panic(http.ErrAbortHandler) // net/http drops the connection, with no end to the reply
}
