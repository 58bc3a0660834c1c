package kbs

import (
	"errors"
	"testing"
	"time"
)

func TestSpentNonces(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newSpentNonces(3)
	ch := func(i byte, ttl time.Duration) *challenge {
		c := &challenge{expires: now.Add(ttl)}
		c.nonce[0], c.nonce[31] = i, 0xff
		return c
	}
	for i := range byte(3) {
		if _, err := r.spend(ch(i, time.Minute+time.Duration(i)*time.Second), now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.spend(ch(1, time.Minute), now); !errors.Is(err, errSessionSpent) {
		t.Fatalf("replay: %v", err)
	}
	wait, err := r.spend(ch(9, time.Minute), now.Add(10*time.Second))
	if !errors.Is(err, errSpentFull) || wait != 50*time.Second {
		t.Fatalf("full: %v, wait %v", err, wait)
	}
	// The oldest expires: room for one, and its nonce is forgotten (its challenge is dead).
	if _, err := r.spend(ch(9, time.Minute), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r.has(ch(0, 0)) || !r.has(ch(2, 0)) || r.len() != 3 {
		t.Fatalf("after expiry: has(0) %v has(2) %v len %d", r.has(ch(0, 0)), r.has(ch(2, 0)), r.len())
	}
	// Many cycles keep the queue within its bound.
	now = now.Add(2 * time.Minute)
	for i := range 10000 {
		now = now.Add(time.Second)
		c := ch(byte(i), 2*time.Second)
		c.nonce[1], c.nonce[2] = byte(i>>8), 1
		if _, err := r.spend(c, now); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	if len(r.queue) > 2*r.max || r.len() > r.max {
		t.Fatalf("queue %d, set %d after cycles", len(r.queue), r.len())
	}
}

func TestChallengeRoundTrip(t *testing.T) {
	c := &challenge{expires: time.Unix(0, 1234567890123), tee: "snp", version: "0.4.0"}
	c.nonce[5] = 7
	b, err := c.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalChallenge(b)
	if err != nil || *got != *c {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{b[:len(b)-1], append(b, 0), b[:39], nil} {
		if _, err := unmarshalChallenge(bad); err == nil {
			t.Errorf("%d bytes parsed", len(bad))
		}
	}
	if _, err := (&challenge{tee: string(make([]byte, 256))}).marshal(); err == nil {
		t.Error("a 256-byte TEE marshalled")
	}
}
