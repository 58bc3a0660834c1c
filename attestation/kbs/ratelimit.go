package kbs

import (
	"container/list"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clientLimits is a token bucket per client, keyed by source address (an IPv6 address by its
// /64, which one host usually holds whole). The set of buckets is bounded: a new client takes
// the place of the least recently seen one if that one's bucket has refilled (forgetting it
// changes nothing); otherwise the table is full of active clients and the newcomer shares one
// overflow bucket with every other client left out. Memory is thus bounded by maxClients
// whatever the number of source addresses.
type clientLimits struct {
	mu       sync.Mutex
	limit    rate.Limit
	burst    int
	max      int
	clients  map[netip.Prefix]*list.Element // of *clientBucket
	lru      list.List                      // front: most recently seen
	overflow *rate.Limiter
}

type clientBucket struct {
	key netip.Prefix
	lim *rate.Limiter
}

// overflowFactor is how much more the shared overflow bucket allows than one client's.
const overflowFactor = 10

func newClientLimits(perSecond float64, burst, maxClients int) *clientLimits {
	l := rate.Limit(perSecond)
	return &clientLimits{
		limit: l, burst: burst, max: maxClients,
		clients:  make(map[netip.Prefix]*list.Element),
		overflow: rate.NewLimiter(l*overflowFactor, burst*overflowFactor),
	}
}

// allow takes a token from the client's bucket, or says how long until one is there.
func (c *clientLimits) allow(key netip.Prefix, now time.Time) (bool, time.Duration) {
	lim := c.bucket(key, now)
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (c *clientLimits) bucket(key netip.Prefix, now time.Time) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.clients[key]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*clientBucket).lim
	}
	if len(c.clients) >= c.max {
		back := c.lru.Back()
		b := back.Value.(*clientBucket)
		if b.lim.TokensAt(now) < float64(c.burst) {
			return c.overflow
		}
		delete(c.clients, b.key)
		c.lru.Remove(back)
	}
	b := &clientBucket{key: key, lim: rate.NewLimiter(c.limit, c.burst)}
	c.clients[key] = c.lru.PushFront(b)
	return b.lim
}

// len returns the number of clients tracked.
func (c *clientLimits) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.clients)
}

// clientKey is the limiter key of a request's source address: the address itself for IPv4,
// its /64 for IPv6. Forwarding headers are not trusted (a KBS behind a proxy sees the
// proxy's address: configure the limit there, or turn it off here).
func clientKey(r *http.Request) netip.Prefix {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{} // all unparsable sources share one bucket
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}
