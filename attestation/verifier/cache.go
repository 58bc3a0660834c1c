package verifier

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// chainCache remembers certificate chains that verified, keyed by a digest of the exact bytes
// of the chain and of what it was checked for. An entry is used only between the latest
// NotBefore and the earliest NotAfter of its chain; when full, an arbitrary entry goes.
type chainCache struct {
	mu      sync.Mutex
	max     int
	entries map[[32]byte]chainEntry
}

type chainEntry struct {
	leaf      *x509.Certificate
	simulated bool
	notBefore time.Time
	notAfter  time.Time
}

func newChainCache(max int) *chainCache {
	return &chainCache{max: max, entries: make(map[[32]byte]chainEntry, max)}
}

// cacheKey digests the parts that identify a chain check.
func cacheKey(parts ...[]byte) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(p))))
		h.Write(p)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *chainCache) get(k [32]byte, now time.Time) (chainEntry, bool) {
	if c == nil {
		return chainEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || now.Before(e.notBefore) || now.After(e.notAfter) {
		return chainEntry{}, false
	}
	return e, true
}

func (c *chainCache) put(k [32]byte, e chainEntry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = e
}

// validity returns the window in which every certificate of the chains is valid.
func validity(chains [][]*x509.Certificate) (notBefore, notAfter time.Time, ok bool) {
	if len(chains) == 0 {
		return time.Time{}, time.Time{}, false
	}
	notAfter = chains[0][0].NotAfter
	for _, c := range chains[0] {
		if c.NotBefore.After(notBefore) {
			notBefore = c.NotBefore
		}
		if c.NotAfter.Before(notAfter) {
			notAfter = c.NotAfter
		}
	}
	return notBefore, notAfter, true
}
