package faultserver_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/internal/faultserver"
)

// TestDieAndRestart checks the staging the fault tests rely on (issue 12): a request that
// DieOn matches gets the reply's headers and the first bytes only, then the connection drops
// and the address refuses connections until Restart serves it again.
func TestDieAndRestart(t *testing.T) {
	body := strings.Repeat("0123456789", 100)
	s := faultserver.Start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	get := func() (string, error) {
		resp, err := http.Get(s.URL() + "/x")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get(); err != nil || got != body {
		t.Fatalf("alive: %d bytes, %v", len(got), err)
	}
	died := s.DieOn(func(r *http.Request) bool { return r.URL.Path == "/x" }, 123)
	got, err := get()
	if !errors.Is(err, io.ErrUnexpectedEOF) || got != body[:123] {
		t.Fatalf("dying: %d bytes, %v; want 123 and an unexpected EOF", len(got), err)
	}
	<-died
	if _, err := get(); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("dead: %v, want connection refused", err)
	}
	addr := s.Addr()
	s.Restart(nil)
	if got, err := get(); err != nil || got != body || s.Addr() != addr {
		t.Fatalf("restarted on %s (was %s): %d bytes, %v", s.Addr(), addr, len(got), err)
	}
	if reqs := s.Requests(); len(reqs) != 3 || reqs[1] != "GET /x" {
		t.Errorf("requests %q (the refused one never arrived)", reqs)
	}
}
