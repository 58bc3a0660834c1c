package imagepull

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// guard is the innermost http.RoundTripper of a pull. It refuses plain HTTP to hosts not
// listed as insecure (go-containerregistry itself would use HTTP for loopback and private
// addresses, and follows redirects anywhere), and bounds manifest responses.
type guard struct {
	inner       http.RoundTripper
	opts        *Options
	maxManifest int64

	// tripped records the first limit hit, since go-containerregistry may not keep the
	// error chain of a body read.
	tripped atomic.Pointer[error]
}

var _ http.RoundTripper = (*guard)(nil)

// RoundTrip implements http.RoundTripper.
func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !g.opts.insecure(req.URL.Host) {
		return nil, fmt.Errorf("%s %s://%s: %w (host %q is not in Options.InsecureRegistries)",
			req.Method, req.URL.Scheme, req.URL.Host, ErrInsecure, req.URL.Host)
	}
	resp, err := g.inner.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	if exceeds(resp.ContentLength, g.maxManifest) {
		resp.Body.Close()
		return nil, g.trip(fmt.Errorf("manifest %s is %d bytes, over the %d-byte limit: %w",
			req.URL.Path, resp.ContentLength, g.maxManifest, ErrLimit))
	}
	if g.maxManifest >= 0 {
		resp.Body = &cappedBody{ReadCloser: resp.Body, left: g.maxManifest, g: g, what: req.URL.Path}
	}
	return resp, nil
}

// trip records err as the limit hit and returns it.
func (g *guard) trip(err error) error {
	g.tripped.CompareAndSwap(nil, &err)
	return err
}

// limitErr returns the recorded limit error, or nil.
func (g *guard) limitErr() error {
	if p := g.tripped.Load(); p != nil {
		return *p
	}
	return nil
}

// cappedBody fails a manifest body that goes past the limit (chunked responses carry no
// Content-Length).
type cappedBody struct {
	io.ReadCloser
	left int64
	g    *guard
	what string
}

// Read implements io.Reader.
func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, c.g.limitErr()
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, c.g.trip(fmt.Errorf("manifest %s is over the %d-byte limit: %w",
			c.what, c.g.maxManifest, ErrLimit))
	}
	return n, err
}
