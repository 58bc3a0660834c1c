package kbsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/veil-runtime/veil/attestation/kbswire/jwe"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// post sends a JSON body to the KBS path and returns the reply body and header on 200.
func (c *Client) post(ctx context.Context, op, path string, v any, cookie *http.Cookie) ([]byte, http.Header, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, nil, fmt.Errorf("KBS %s: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(path), bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("KBS %s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cookie != nil {
		req.AddCookie(cookie)
	}
	return c.send(op, req)
}

func (c *Client) endpoint(path string) string {
	u := *c.base
	u.Path += protocol.PathPrefix + path
	return u.String()
}

// send does the request and reads the reply; a status other than 200 is an *Error.
func (c *Client) send(op string, req *http.Request) ([]byte, http.Header, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("KBS %s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, nil, NewError(op, resp.StatusCode, b)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxResponseBytes+1))
	if err != nil { // the connection dropped in the middle of the reply: named like Do's errors
		err = &url.Error{Op: urlOp(req.Method), URL: req.URL.Redacted(), Err: err}
		return nil, nil, fmt.Errorf("KBS %s: read reply: %w", op, err)
	}
	if int64(len(b)) > c.opts.MaxResponseBytes {
		return nil, nil, fmt.Errorf("KBS %s: reply larger than %d bytes", op, c.opts.MaxResponseBytes)
	}
	return b, resp.Header, nil
}

// urlOp spells method as net/http's *url.Error does ("Get", "Post").
func urlOp(method string) string {
	return method[:1] + strings.ToLower(method[1:])
}

// GetResource fetches and opens the resource named by a kbs:///repository/type/tag URI.
func (c *Client) GetResource(ctx context.Context, uri string) ([]byte, error) {
	p, err := protocol.ParseResourceURI(uri)
	if err != nil {
		return nil, err
	}
	return c.GetResourcePath(ctx, p)
}

// GetResourcePath fetches and opens a resource. When the KBS no longer accepts the token
// (TokenNotFound or TokenVerifierError, e.g. after a restart), it attests again once.
func (c *Client) GetResourcePath(ctx context.Context, p protocol.ResourcePath) ([]byte, error) {
	if _, err := protocol.ParseResourcePath(p.String()); err != nil {
		return nil, err
	}
	for renewed := false; ; renewed = true {
		g, err := c.grant(ctx)
		if err != nil {
			return nil, err
		}
		data, err := c.fetch(ctx, p, g)
		var ke *Error
		if !renewed && errors.As(err, &ke) && (ke.Kind == protocol.TokenNotFound || ke.Kind == protocol.TokenVerifierError) {
			c.forget(g)
			continue
		}
		return data, err
	}
}

func (c *Client) fetch(ctx context.Context, p protocol.ResourcePath, g *grant) ([]byte, error) {
	op := "get resource " + p.String()
	var body []byte
	err := c.opts.Retry.do(ctx, "KBS "+c.base.Redacted()+" "+op, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint("/resource/"+p.String()), nil)
		if err != nil {
			return fmt.Errorf("KBS %s: %w", op, err)
		}
		// The attested session's cookie spares the KBS a token check; the token is the
		// fallback once the session has expired.
		req.AddCookie(g.cookie)
		req.Header.Set("Authorization", "Bearer "+g.token.Raw)
		body, _, err = c.send(op, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	var sealed jwe.JWE
	if err := json.Unmarshal(body, &sealed); err != nil {
		return nil, fmt.Errorf("KBS %s: reply is not a JWE: %w", op, err)
	}
	data, err := jwe.Decrypt(g.key, &sealed)
	if err != nil {
		return nil, fmt.Errorf("KBS %s: %w", op, err)
	}
	return data, nil
}
