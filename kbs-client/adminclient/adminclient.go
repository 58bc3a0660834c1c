// Package adminclient speaks the KBS administrator's API from a host tool (veil-kbs-client's
// admin commands, veil-keyprovider): requests signed with the administrator's Ed25519 key as
// a short-lived bearer token. It is never linked into the guest.
package adminclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/veil-runtime/veil/attestation/kbswire/admin"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// ErrExists is returned by CreateResource when the KBS already holds the resource.
var ErrExists = errors.New("the KBS already holds this resource")

// maxReply bounds what is read of an answer.
const maxReply = 4 << 20

// Client calls one KBS's administrator endpoints.
type Client struct {
	url  string
	key  ed25519.PrivateKey
	http *http.Client
}

// New returns a client of the KBS at url (http(s)://host:port) signing with key; hc nil is
// http.DefaultClient.
func New(url string, key ed25519.PrivateKey, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{url: strings.TrimSuffix(url, "/") + protocol.PathPrefix, key: key, http: hc}
}

// Load returns a client signing with the private key in keyFile (veil-kbs's admin key PEM).
func Load(url, keyFile string, hc *http.Client) (*Client, error) {
	key, err := admin.LoadPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	return New(url, key, hc), nil
}

// SetResource creates or replaces the resource named by uri (kbs:///repo/type/tag).
func (c *Client) SetResource(ctx context.Context, uri string, data []byte) error {
	return c.putResource(ctx, "set-resource", uri, data, false)
}

// CreateResource creates the resource, and returns ErrExists (leaving the KBS's value as it
// was) if it is there already.
func (c *Client) CreateResource(ctx context.Context, uri string, data []byte) error {
	return c.putResource(ctx, "create-resource", uri, data, true)
}

func (c *Client) putResource(ctx context.Context, op, uri string, data []byte, createOnly bool) error {
	p, err := protocol.ParseResourceURI(uri)
	if err != nil {
		return err
	}
	hdr := http.Header{}
	if createOnly {
		hdr.Set("If-None-Match", "*")
	}
	_, err = c.Call(ctx, op, http.MethodPost, "/resource/"+p.String(), data, hdr)
	var ke *kbsclient.Error
	if createOnly && errors.As(err, &ke) && ke.StatusCode == http.StatusPreconditionFailed {
		return fmt.Errorf("%s %s: %w", op, uri, ErrExists)
	}
	return err
}

// BindRepository replaces the initdata digests (hex) bound to repository: under the KBS's
// default resource policy only guests launched with one of them read it. No digests unbind.
func (c *Client) BindRepository(ctx context.Context, repository string, digests []string) error {
	if digests == nil {
		digests = []string{}
	}
	body, err := json.Marshal(protocol.RepositoryBinding{InitData: digests})
	if err != nil {
		return err
	}
	_, err = c.Call(ctx, "bind-repository", http.MethodPost, protocol.RepositoryBindingPath+url.PathEscape(repository), body, nil)
	return err
}

// RepositoryBinding returns the initdata digests bound to repository.
func (c *Client) RepositoryBinding(ctx context.Context, repository string) ([]string, error) {
	out, err := c.Call(ctx, "get-repository-binding", http.MethodGet, protocol.RepositoryBindingPath+url.PathEscape(repository), nil, nil)
	if err != nil {
		return nil, err
	}
	var b protocol.RepositoryBinding
	if err := json.Unmarshal(out, &b); err != nil {
		return nil, fmt.Errorf("get-repository-binding: reply: %w", err)
	}
	return b.InitData, nil
}

// Call sends one administrator request to path (below /kbs/v0) and returns the answer's body;
// a refusal is a *kbsclient.Error.
func (c *Client) Call(ctx context.Context, op, method, path string, body []byte, hdr http.Header) ([]byte, error) {
	tok, err := admin.Token(c.key, admin.DefaultTokenTTL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, kbsclient.NewError(op, resp.StatusCode, out)
	}
	return out, nil
}
