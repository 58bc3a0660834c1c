package kbsclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/veil-runtime/veil/attestation/binding"
	"github.com/veil-runtime/veil/attestation/kbswire/jwe"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// Attester produces TEE evidence that carries the given report_data. Veil's attesters
// (attestation/attester, attestation/sim) satisfy it.
type Attester interface {
	// TEE names the evidence kind sent in the auth request ("snp", "tdx", ...).
	TEE() string
	// Evidence returns the evidence (the primary_evidence JSON) for reportData.
	Evidence(ctx context.Context, reportData [binding.ReportDataSize]byte) (json.RawMessage, error)
}

// KeyType selects the ephemeral key that resources are sealed to.
type KeyType string

// Key types.
const (
	KeyEC  KeyType = "EC"  // EC P-256, ECDH-ES+A256KW (the default)
	KeyRSA KeyType = "RSA" // RSA 3072, RSA-OAEP-256
)

// Options configures a Client. The zero value is usable.
type Options struct {
	// HTTPClient sends the requests (TLS roots, proxies, timeouts); nil is a client with a
	// 30-second timeout per request.
	HTTPClient *http.Client
	// KeyType is the ephemeral key's type (default KeyEC).
	KeyType KeyType
	// InitData is sent as init-data in the attest request, or null when nil.
	InitData *protocol.InitData
	// Retry bounds the retries of transient failures.
	Retry Retry
	// RenewBefore renews the token this long before it expires (default 30s).
	RenewBefore time.Duration
	// MaxResponseBytes bounds a reply's size (default 16 MiB).
	MaxResponseBytes int64
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Token is an attestation token as the client holds it.
type Token struct {
	// Raw is the JWT.
	Raw string
	// Claims are the token's claims, decoded without checking the signature: the client
	// trusts the KBS it talks to, and only the KBS relies on the token.
	Claims map[string]any
	// Expires is the exp claim (zero when absent).
	Expires time.Time
}

// grant is a token, the private key of the tee-pubkey it carries, and the session cookie
// that the KBS accepts instead of the token while the session lives.
type grant struct {
	token  Token
	key    crypto.PrivateKey
	cookie *http.Cookie
}

// Client talks to one KBS. It is safe for concurrent use; handshakes are serialised.
type Client struct {
	base *url.URL
	att  Attester
	opts Options
	http *http.Client

	mu  sync.Mutex
	cur *grant
}

// New returns a client of the KBS at kbsURL (http or https, e.g. "https://kbs:8080").
func New(kbsURL string, att Attester, opts Options) (*Client, error) {
	u, err := url.Parse(kbsURL)
	if err != nil {
		return nil, fmt.Errorf("KBS URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("KBS URL %q: want http(s)://host[:port]", kbsURL)
	}
	if att == nil {
		return nil, errors.New("KBS client: no attester")
	}
	switch opts.KeyType {
	case "":
		opts.KeyType = KeyEC
	case KeyEC, KeyRSA:
	default:
		return nil, fmt.Errorf("KBS client: key type %q (want EC or RSA)", opts.KeyType)
	}
	opts.Retry = opts.Retry.withDefaults()
	if opts.RenewBefore <= 0 {
		opts.RenewBefore = 30 * time.Second
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 16 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, att: att, opts: opts, http: hc}, nil
}

// Token returns the current token, attesting first when there is none or it is about to
// expire.
func (c *Client) Token(ctx context.Context) (*Token, error) {
	g, err := c.grant(ctx)
	if err != nil {
		return nil, err
	}
	t := g.token
	return &t, nil
}

// Attest runs a new handshake, replacing the current token.
func (c *Client) Attest(ctx context.Context) (*Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g, err := c.handshakeRetry(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = g
	t := g.token
	return &t, nil
}

func (c *Client) grant(ctx context.Context) (*grant, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && (c.cur.token.Expires.IsZero() || c.opts.Now().Add(c.opts.RenewBefore).Before(c.cur.token.Expires)) {
		return c.cur, nil
	}
	g, err := c.handshakeRetry(ctx)
	if err != nil {
		return nil, err
	}
	c.cur = g
	return g, nil
}

// forget drops g if it is still the current grant, so the next call attests again.
func (c *Client) forget(g *grant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == g {
		c.cur = nil
	}
}

func (c *Client) handshakeRetry(ctx context.Context) (*grant, error) {
	var g *grant
	err := c.opts.Retry.do(ctx, "KBS "+c.base.Redacted()+" handshake", func(ctx context.Context) error {
		var err error
		g, err = c.handshake(ctx)
		return err
	})
	return g, err
}

// handshake runs auth and attest once.
func (c *Client) handshake(ctx context.Context) (*grant, error) {
	req := protocol.Request{Version: protocol.Version, TEE: c.att.TEE(), ExtraParams: json.RawMessage(`{}`)}
	body, hdr, err := c.post(ctx, "auth", "/auth", req, nil)
	if err != nil {
		return nil, err
	}
	var ch protocol.Challenge
	if err := json.Unmarshal(body, &ch); err != nil {
		return nil, fmt.Errorf("KBS auth: challenge: %w", err)
	}
	cookie := sessionCookie(hdr)
	if cookie == nil {
		return nil, errors.New("KBS auth: the reply has no session cookie")
	}
	key, jwk, err := c.newKey()
	if err != nil {
		return nil, err
	}
	rd, err := binding.ReportData(ch.Nonce, jwk, "")
	if err != nil {
		return nil, fmt.Errorf("KBS attest: %w", err)
	}
	ev, err := c.att.Evidence(ctx, rd)
	if err != nil {
		return nil, fmt.Errorf("KBS attest: %s evidence: %w", c.att.TEE(), err)
	}
	att := protocol.Attestation{
		InitData:    c.opts.InitData,
		RuntimeData: protocol.RuntimeData{Nonce: ch.Nonce, TEEPubKey: jwk},
		TEEEvidence: protocol.TEEEvidence{Primary: ev},
	}
	body, _, err = c.post(ctx, "attest", "/attest", att, cookie)
	if err != nil {
		return nil, err
	}
	var resp protocol.AttestationResponse
	if err := json.Unmarshal(body, &resp); err != nil || resp.Token == "" {
		return nil, fmt.Errorf("KBS attest: reply has no token: %w", err)
	}
	tok, err := ParseToken(resp.Token)
	if err != nil {
		return nil, fmt.Errorf("KBS attest: %w", err)
	}
	return &grant{token: *tok, key: key, cookie: cookie}, nil
}

func sessionCookie(hdr http.Header) *http.Cookie {
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == protocol.SessionCookie {
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	return nil
}

func (c *Client) newKey() (crypto.PrivateKey, json.RawMessage, error) {
	var (
		key crypto.Signer
		err error
	)
	if c.opts.KeyType == KeyRSA {
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ephemeral key: %w", err)
	}
	jwk, err := jwe.PublicJWK(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("ephemeral key: %w", err)
	}
	return key, jwk, nil
}

// ParseToken decodes a JWT's claims without checking its signature.
func ParseToken(raw string) (*Token, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("token: not a compact JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("token payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	t := &Token{Raw: raw}
	if err := dec.Decode(&t.Claims); err != nil {
		return nil, fmt.Errorf("token claims: %w", err)
	}
	if exp, ok := t.Claims["exp"].(json.Number); ok {
		n, err := exp.Int64()
		if err != nil {
			return nil, fmt.Errorf("token exp: %w", err)
		}
		t.Expires = time.Unix(n, 0)
	}
	return t, nil
}
