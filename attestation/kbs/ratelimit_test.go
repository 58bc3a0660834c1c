package kbs

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:4711":                 "192.0.2.7/32",
		"[::ffff:192.0.2.7]:4711":        "192.0.2.7/32",
		"[2001:db8:1:2:3:4:5:6]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443":     "2001:db8:1:2::/64",
		"[fe80::1%eth0]:443":             "fe80::/64",
		"not an address":                 "invalid Prefix",
		"[2001:db8:1:3:3:4:5:6]:443":     "2001:db8:1:3::/64",
		"[2001:db8:1:2:3:4:5:6%x]:44321": "2001:db8:1:2::/64",
	} {
		r := httptest.NewRequest("POST", "/kbs/v0/auth", nil)
		r.RemoteAddr = remote
		if got := clientKey(r).String(); got != want {
			t.Errorf("clientKey(%q) = %s, want %s", remote, got, want)
		}
	}
}

// The table of buckets is bounded: a refilled bucket makes room, active ones do not, and
// the clients left out share the overflow bucket.
func TestClientLimitsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newClientLimits(1, 2, 2) // 1/s, burst 2, 2 clients
	a, b := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")
	c, d := netip.MustParsePrefix("192.0.2.3/32"), netip.MustParsePrefix("192.0.2.4/32")
	for i, p := range []netip.Prefix{b, a, a} {
		if ok, _ := l.allow(p, now); !ok {
			t.Fatalf("request %d refused within its burst", i)
		}
	}
	if ok, wait := l.allow(a, now); ok || wait != time.Second {
		t.Fatalf("a over its burst: %v, wait %v", ok, wait)
	}
	// The table is full of active clients: c and d share the overflow bucket (burst 20).
	for i := range 2 * overflowFactor {
		if ok, _ := l.allow([]netip.Prefix{c, d}[i%2], now); !ok {
			t.Fatalf("overflow request %d refused", i)
		}
	}
	if ok, _ := l.allow(d, now); ok {
		t.Fatal("the overflow bucket has no bound")
	}
	if l.len() != 2 {
		t.Fatalf("%d clients tracked, want 2", l.len())
	}
	// Once the least recently seen bucket (b's) has refilled, a newcomer takes its place.
	now = now.Add(3 * time.Second)
	if ok, _ := l.allow(c, now); !ok {
		t.Fatal("c refused once b's bucket refilled")
	}
	if _, ok := l.clients[b]; ok || l.len() != 2 {
		t.Fatalf("b not evicted: %d clients", l.len())
	}
	if _, ok := l.clients[a]; !ok {
		t.Fatal("a, seen more recently, was evicted")
	}
}
