// Package cdh is the guest's confidential data hub: the one place where the agent obtains
// secrets from the Key Broker Service. A Hub attests to the KBS named by the measured
// initdata (veil.toml [kbs], agent/launch.KBSSettings) with the guest's attester, keeps the
// token and the attested session, and serves GetResource("kbs:///repo/type/tag") requests
// with them: it attests once, reuses the token until the KBS refuses it or it is about to
// expire, and then attests again once (package kbsclient does the protocol).
//
// Errors name the resource URI, the KBS and what the KBS said (*kbsclient.Error is
// reachable with errors.As). Resource bytes are never logged; only their length is, at
// debug level.
//
// The package is guest side: it imports kbs-client and the attesters, never the KBS server,
// shim/ or hypervisor/ (attestation/kbs/kbstest, used only by tests, runs a real KBS).
package cdh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// ErrNoKBS: the Hub has no KBS configured (initdata without [kbs] url).
var ErrNoKBS = errors.New("no KBS configured (initdata veil.toml [kbs] url)")

// Config configures a Hub.
type Config struct {
	// URL is the KBS base URL (launch.KBSSettings.URL). Empty is an error (ErrNoKBS).
	URL string
	// RootCAs, when set, are the only roots a https KBS's certificate may chain to
	// (launch.ParseCACert of KBSSettings.CACert); nil uses the system roots.
	RootCAs *x509.CertPool
	// Attester is the guest's TEE (attester.Detect, or a sim attester).
	Attester attester.Attester
	// InitData is the measured initdata document, sent with the evidence so that the KBS
	// checks its digest against HOST_DATA / MRCONFIGID; nil sends none.
	InitData *protocol.InitData
	// Retry bounds the retries of transient failures (zero: kbsclient's defaults).
	Retry kbsclient.Retry
	// Timeout bounds each HTTP request (default 30s).
	Timeout time.Duration
}

// Hub fetches secrets from one KBS. It is safe for concurrent use.
type Hub struct {
	url    string
	client *kbsclient.Client
}

// New returns a Hub for c. It makes no request: the first GetResource attests.
func New(c Config) (*Hub, error) {
	if c.URL == "" {
		return nil, fmt.Errorf("cdh: %w", ErrNoKBS)
	}
	if c.Attester == nil {
		return nil, errors.New("cdh: no attester")
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the KBS is reached directly: no proxy from the environment
	if c.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12}
	}
	cl, err := kbsclient.New(c.URL, c.Attester, kbsclient.Options{
		HTTPClient: &http.Client{Transport: tr, Timeout: c.Timeout},
		InitData:   c.InitData,
		Retry:      c.Retry,
	})
	if err != nil {
		return nil, fmt.Errorf("cdh: %w", err)
	}
	return &Hub{url: c.URL, client: cl}, nil
}

// KBS returns the KBS's URL.
func (h *Hub) KBS() string { return h.url }

// Error is a failed GetResource: the resource, the KBS, and why. Err is the kbsclient error
// (a *kbsclient.Error when the KBS refused: its Op says whether it refused the attestation
// or the resource, its Kind and Detail what it said).
type Error struct {
	URI string
	KBS string
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("cdh: get %s from KBS %s: %v", e.URI, e.KBS, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// GetResource returns the resource named by uri, kbs:///<repository>/<type>/<tag>. It
// attests first when the Hub holds no usable token.
func (h *Hub) GetResource(ctx context.Context, uri string) ([]byte, error) {
	lg := log.G(ctx).WithField("uri", uri).WithField("kbs", h.url)
	data, err := h.client.GetResource(ctx, uri)
	if err != nil {
		err = &Error{URI: uri, KBS: h.url, Err: err}
		lg.WithError(err).Warn("cdh: resource not obtained")
		return nil, err
	}
	lg.WithField("bytes", len(data)).Debug("cdh: resource obtained")
	return data, nil
}
