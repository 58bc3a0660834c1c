package verifier

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// pcsMaxAge is how long fetched Intel PCS collateral is kept at most: a day, as Intel's PCCS
// refreshes its cache by default. An entry goes sooner when its own nextUpdate comes.
const pcsMaxAge = 24 * time.Hour

// pcsCache keeps Intel PCS responses (TCB info, QE identity, CRLs) fetched online, by URL, so
// that repeat TDX verifications do not each cost four PCS requests. It keeps the bytes only:
// each use verifies them again (signatures, issuer chains, validity).
type pcsCache struct {
	g   HTTPSGetter
	now func() time.Time

	mu      sync.Mutex
	entries map[string]pcsEntry
}

type pcsEntry struct {
	header  http.Header
	body    []byte
	expires time.Time
}

func newPCSCache(g HTTPSGetter, now func() time.Time) *pcsCache {
	return &pcsCache{g: g, now: now, entries: map[string]pcsEntry{}}
}

func (c *pcsCache) Get(ctx context.Context, link string) (http.Header, []byte, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[link]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.header, e.body, nil
	}
	h, body, err := c.g.Get(ctx, link)
	if err != nil {
		return nil, nil, err
	}
	expires := now.Add(pcsMaxAge)
	if next := nextUpdate(body); !next.IsZero() && next.Before(expires) {
		expires = next
	}
	c.mu.Lock()
	if len(c.entries) >= 256 { // FMSPCs of a fleet, the QE identity, the CRLs: never this many
		clear(c.entries)
	}
	c.entries[link] = pcsEntry{header: h, body: body, expires: expires}
	c.mu.Unlock()
	return h, body, nil
}

// nextUpdate is a PCS response's nextUpdate (a DER CRL's, or the signed object's of a TCB info
// or QE identity); zero when it has none.
func nextUpdate(body []byte) time.Time {
	if crl, err := x509.ParseRevocationList(body); err == nil {
		return crl.NextUpdate
	}
	var v struct {
		TcbInfo         struct{ NextUpdate time.Time } `json:"tcbInfo"`
		EnclaveIdentity struct{ NextUpdate time.Time } `json:"enclaveIdentity"`
	}
	if json.Unmarshal(body, &v) != nil {
		return time.Time{}
	}
	if !v.TcbInfo.NextUpdate.IsZero() {
		return v.TcbInfo.NextUpdate
	}
	return v.EnclaveIdentity.NextUpdate
}
