package verifier

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// httpGetter is the default HTTPSGetter: GET with the client's timeout, 2xx only, 16 MiB cap.
type httpGetter struct {
	client *http.Client
}

func (g httpGetter) Get(ctx context.Context, url string) (http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Header, body, nil
}

// sevGetter adapts an HTTPSGetter to go-sev-guest's trust.HTTPSGetter and ContextHTTPSGetter.
type sevGetter struct {
	ctx context.Context
	g   HTTPSGetter
}

func (s sevGetter) Get(url string) ([]byte, error) { return s.GetContext(s.ctx, url) }

func (s sevGetter) GetContext(ctx context.Context, url string) ([]byte, error) {
	_, body, err := s.g.Get(ctx, url)
	return body, err
}

// tdxGetter is the pcsGetter of Intel's PCS itself: an HTTPSGetter (headers carry the
// collateral's issuer chains), each response named by its URL.
type tdxGetter struct {
	ctx context.Context
	g   HTTPSGetter
}

func (t tdxGetter) Get(url string) (map[string][]string, []byte, string, error) {
	h, body, err := t.g.Get(t.ctx, url)
	return h, body, url, err
}
