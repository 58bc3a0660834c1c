package kbs

import (
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// sessionState is where a session is in the handshake.
type sessionState int

const (
	stateAuthed    sessionState = iota // challenge sent, waiting for attest
	stateAttesting                     // attest in progress: the nonce is spent
	stateAttested                      // token issued; resources may be fetched with the cookie
	stateFailed                        // attest refused: the session is dead
)

// session is one RCAR handshake. Its fields are guarded by sessionTable.mu.
type session struct {
	id      string
	tee     string
	nonce   string
	expires time.Time
	state   sessionState

	// Set when attested.
	token     string
	claims    map[string]any
	teePubKey crypto.PublicKey
	rawPubKey json.RawMessage
}

// Errors of the session table.
var (
	errTableFull      = errors.New("too many sessions in progress")
	errNoSession      = errors.New("unknown session")
	errSessionExpired = errors.New("session expired")
	errSessionSpent   = errors.New("session already used for an attestation")
	errNotAttested    = errors.New("session not attested")
)

// sessionTable is the bounded set of live sessions. Expired sessions are swept when the table
// fills up and at least every TTL/4 on insert, so no goroutine is needed.
type sessionTable struct {
	mu        sync.Mutex
	max       int
	now       func() time.Time
	sessions  map[string]*session
	lastSweep time.Time
}

func newSessionTable(max int, now func() time.Time) *sessionTable {
	return &sessionTable{max: max, now: now, sessions: make(map[string]*session)}
}

// newSessionID returns 16 random bytes as 32 hex characters.
func newSessionID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// add stores a new authed session, or refuses when the table is full of live sessions.
func (t *sessionTable) add(s *session, ttl time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.sessions) >= t.max || now.Sub(t.lastSweep) > ttl/4 {
		t.sweepLocked(now)
	}
	if len(t.sessions) >= t.max {
		return errTableFull
	}
	t.sessions[s.id] = s
	return nil
}

func (t *sessionTable) sweepLocked(now time.Time) {
	for id, s := range t.sessions {
		if !now.Before(s.expires) {
			delete(t.sessions, id)
		}
	}
	t.lastSweep = now
}

// len returns the number of sessions held, live or not yet swept.
func (t *sessionTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// claim moves an authed session to attesting and returns a copy of its tee and nonce. It is
// the single use of a session: any later claim fails.
func (t *sessionTable) claim(id string) (tee, nonce string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.sessions[id]
	if !ok {
		return "", "", errNoSession
	}
	if !t.now().Before(s.expires) {
		delete(t.sessions, id)
		return "", "", errSessionExpired
	}
	if s.state != stateAuthed {
		return "", "", errSessionSpent
	}
	s.state = stateAttesting
	return s.tee, s.nonce, nil
}

// finish records the outcome of the attestation of a claimed session. A token never outlives
// its session for cookie use: expires is lowered to the token's expiry.
func (t *sessionTable) finish(id string, a *sessionGrant) (time.Time, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.sessions[id]
	if !ok || s.state != stateAttesting {
		return time.Time{}, errNoSession
	}
	if a == nil {
		s.state = stateFailed
		return s.expires, nil
	}
	s.state = stateAttested
	s.token, s.claims, s.teePubKey, s.rawPubKey = a.token, a.claims, a.pubKey, a.rawPubKey
	if !a.expires.IsZero() && a.expires.Before(s.expires) {
		s.expires = a.expires
	}
	return s.expires, nil
}

// sessionGrant is what an attested session holds.
type sessionGrant struct {
	token     string
	claims    map[string]any
	pubKey    crypto.PublicKey
	rawPubKey json.RawMessage
	expires   time.Time
}

// attested returns the grant of a live attested session.
func (t *sessionTable) attested(id string) (*sessionGrant, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.sessions[id]
	if !ok {
		return nil, errNoSession
	}
	if !t.now().Before(s.expires) {
		delete(t.sessions, id)
		return nil, errSessionExpired
	}
	if s.state != stateAttested {
		return nil, errNotAttested
	}
	return &sessionGrant{token: s.token, claims: s.claims, pubKey: s.teePubKey, rawPubKey: s.rawPubKey, expires: s.expires}, nil
}
