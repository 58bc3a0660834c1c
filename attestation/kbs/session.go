package kbs

import (
	"crypto"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

// A session holds no server state before attestation: the challenge travels in the session
// cookie, sealed with the KBS's session key (sessionkey.go), and comes back with the attest
// request. After attestation the cookie is the token itself. The only state is the record of
// spent nonces, which makes each challenge single-use. See docs/kbs.md, "Sessions".

// challenge is what the session cookie carries between auth and attest.
type challenge struct {
	expires time.Time
	nonce   [protocol.NonceSize]byte
	tee     string
	version string // the client's protocol version, as it sent it
}

// cookiePurpose labels sealed challenges (additional data), so that nothing else sealed with
// the same key can pass for one.
const cookiePurpose = "veil-kbs challenge cookie v1"

// nonceString is the nonce as the challenge sends it and as the evidence binds it.
func (c *challenge) nonceString() string { return base64.StdEncoding.EncodeToString(c.nonce[:]) }

// marshal writes expires (Unix ns, 8 bytes) || nonce (32) || tee || version (strings with a
// one-byte length).
func (c *challenge) marshal() ([]byte, error) {
	if len(c.tee) > 255 || len(c.version) > 255 {
		return nil, errors.New("challenge: tee or version longer than 255 bytes")
	}
	b := make([]byte, 0, 8+len(c.nonce)+2+len(c.tee)+len(c.version))
	b = putInt64(b, c.expires.UnixNano())
	b = append(b, c.nonce[:]...)
	b = putString(b, c.tee)
	return putString(b, c.version), nil
}

func unmarshalChallenge(b []byte) (*challenge, error) {
	var c challenge
	if len(b) < 8+len(c.nonce) {
		return nil, errCookieFormat
	}
	c.expires = time.Unix(0, int64(binary.BigEndian.Uint64(b)))
	b = b[8:]
	b = b[copy(c.nonce[:], b):]
	var ok bool
	if c.tee, b, ok = getString(b); !ok {
		return nil, errCookieFormat
	}
	if c.version, b, ok = getString(b); !ok || len(b) != 0 {
		return nil, errCookieFormat
	}
	return &c, nil
}

// sealChallenge returns the cookie value of a challenge: base64url (no padding) of the sealed
// bytes.
func (s *Server) sealChallenge(c *challenge) (string, error) {
	pt, err := c.marshal()
	if err != nil {
		return "", err
	}
	sealed, err := s.keys.seal(cookiePurpose, pt)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Errors of a session cookie.
var (
	errSessionExpired = errors.New("session expired")
	errSessionSpent   = errors.New("session already used for an attestation")
	errSpentFull      = errors.New("too many attestations in progress")
)

// maxCookieLen bounds the cookie value decoded: a sealed challenge is about 130 characters.
const maxCookieLen = 512

// openChallenge authenticates a cookie value, then parses it and checks its expiry.
func (s *Server) openChallenge(value string) (*challenge, error) {
	if len(value) > maxCookieLen {
		return nil, errCookieFormat
	}
	sealed, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return nil, errCookieFormat
	}
	pt, err := s.keys.open(cookiePurpose, sealed)
	if err != nil {
		return nil, err
	}
	c, err := unmarshalChallenge(pt)
	if err != nil {
		return nil, err
	}
	if !s.opts.Now().Before(c.expires) {
		return nil, errSessionExpired
	}
	return c, nil
}

// sessionGrant is what an attested client is granted: the token and what it carries.
type sessionGrant struct {
	token     string
	claims    map[string]any
	pubKey    crypto.PublicKey
	rawPubKey json.RawMessage
	expires   time.Time
}

// spentKey is the part of a nonce the record keeps: 128 of its 256 random bits, ample to tell
// the nonces of one lifetime apart (the KBS makes them; a client cannot choose one).
type spentKey [16]byte

// spentNonces records the nonces of the challenges an attest request has used, until the
// challenge expires, so that each cookie is used at most once. Entries are kept in a queue
// in insertion order; since a challenge is spent within a lifetime of its making, that is
// nearly expiry order, and expired entries are dropped from its head on every insert. The
// record is bounded: when full of live entries, spend refuses (the caller answers 503 with
// Retry-After) rather than forget a nonce and let a replay through.
type spentNonces struct {
	mu    sync.Mutex
	max   int
	set   map[spentKey]struct{}
	queue []spentEntry // queue[head:] are live or not yet dropped
	head  int
}

type spentEntry struct {
	key     spentKey
	expires int64 // Unix ns
}

func newSpentNonces(max int) *spentNonces {
	return &spentNonces{max: max, set: make(map[spentKey]struct{})}
}

// spend records the challenge's nonce. It fails when the nonce is already spent, or, with
// the time until room is expected, when the record is full.
func (r *spentNonces) spend(c *challenge, now time.Time) (retryAfter time.Duration, err error) {
	var k spentKey
	copy(k[:], c.nonce[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropExpiredLocked(now.UnixNano())
	if _, ok := r.set[k]; ok {
		return 0, errSessionSpent
	}
	if len(r.set) >= r.max {
		return time.Duration(r.queue[r.head].expires - now.UnixNano()), errSpentFull
	}
	r.set[k] = struct{}{}
	r.queue = append(r.queue, spentEntry{key: k, expires: c.expires.UnixNano()})
	return 0, nil
}

func (r *spentNonces) dropExpiredLocked(now int64) {
	for r.head < len(r.queue) && r.queue[r.head].expires <= now {
		delete(r.set, r.queue[r.head].key)
		r.head++
	}
	// Reuse the slice's front once half of it is dead.
	if r.head > 0 && r.head >= len(r.queue)/2 {
		n := copy(r.queue, r.queue[r.head:])
		r.queue = r.queue[:n]
		r.head = 0
	}
}

// has reports whether the challenge's nonce is spent (a cheap check before verification;
// spend is the atomic one).
func (r *spentNonces) has(c *challenge) bool {
	var k spentKey
	copy(k[:], c.nonce[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[k]
	return ok
}

// len returns the number of nonces held.
func (r *spentNonces) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.set)
}

// retryAfterSeconds is a Retry-After value: whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return fmt.Sprint(max(s, 1))
}
