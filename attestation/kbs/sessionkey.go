package kbs

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// SessionKeySize is the size of a session key: an XChaCha20-Poly1305 key.
const SessionKeySize = chacha20poly1305.KeySize

// keyIDSize is the size of a key's id in a cookie: the first bytes of SHA-256 of the key.
const keyIDSize = 4

// sessionKey is one sealing key and its id.
type sessionKey struct {
	id   [keyIDSize]byte
	aead cipherAEAD
}

// cipherAEAD is the part of cipher.AEAD the keyring uses.
type cipherAEAD interface {
	NonceSize() int
	Overhead() int
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
}

func newSessionKey(key []byte) (*sessionKey, error) {
	if len(key) != SessionKeySize {
		return nil, fmt.Errorf("session key: %d bytes, want %d", len(key), SessionKeySize)
	}
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	sum := sha256.Sum256(key)
	k := &sessionKey{aead: a}
	copy(k.id[:], sum[:])
	return k, nil
}

// Errors of opening a sealed value.
var (
	errCookieFormat = errors.New("session cookie is not one this KBS issues")
	errCookieKey    = errors.New("session cookie sealed with a key this KBS no longer accepts (an expired key, or another KBS's: replicas must share session_key_file)")
	errCookieAuth   = errors.New("session cookie fails authentication")
)

// keyring holds the current sealing key and the previous one. Generated keys rotate every
// lifetime: a value sealed with the current key is accepted until the key after next is
// made, so anything sealed less than a lifetime ago opens. Keys loaded from a file never
// rotate in memory; the operator rotates the file (docs/kbs.md).
type keyring struct {
	mu        sync.Mutex
	cur, prev *sessionKey
	rotated   time.Time     // when cur was made; zero for file keys
	lifetime  time.Duration // rotation period; 0 for file keys
	now       func() time.Time
}

// newGeneratedKeyring makes a random key that rotates every lifetime.
func newGeneratedKeyring(lifetime time.Duration, now func() time.Time) (*keyring, error) {
	k, err := randomSessionKey()
	if err != nil {
		return nil, err
	}
	return &keyring{cur: k, rotated: now(), lifetime: lifetime, now: now}, nil
}

// newFixedKeyring seals with keys[0] and also accepts keys[1], when given.
func newFixedKeyring(keys [][]byte) (*keyring, error) {
	if len(keys) < 1 || len(keys) > 2 {
		return nil, fmt.Errorf("session keys: %d given, want the current one and at most one previous", len(keys))
	}
	r := &keyring{}
	var err error
	if r.cur, err = newSessionKey(keys[0]); err != nil {
		return nil, err
	}
	if len(keys) == 2 {
		if r.prev, err = newSessionKey(keys[1]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func randomSessionKey() (*sessionKey, error) {
	b := make([]byte, SessionKeySize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	return newSessionKey(b)
}

// sealer returns the key to seal with, rotating a generated key that is a lifetime old.
func (r *keyring) sealer() (*sessionKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lifetime > 0 {
		if now := r.now(); now.Sub(r.rotated) >= r.lifetime {
			k, err := randomSessionKey()
			if err != nil {
				return nil, err
			}
			// A current key two lifetimes old sealed nothing still live: drop it too.
			r.prev = r.cur
			if now.Sub(r.rotated) >= 2*r.lifetime {
				r.prev = nil
			}
			r.cur, r.rotated = k, now
		}
	}
	return r.cur, nil
}

// opener returns the key with this id, if it is still accepted.
func (r *keyring) opener(id []byte) *sessionKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range []*sessionKey{r.cur, r.prev} {
		if k != nil && bytes.Equal(k.id[:], id) {
			return k
		}
	}
	return nil
}

// Sealed value layout: format (1 byte) || key id (4) || XChaCha20 nonce (24) || ciphertext.
// The additional data is format || key id || the purpose label, so a value sealed for one
// purpose never opens as another.
const sealFormat = 1

func (r *keyring) seal(purpose string, plaintext []byte) ([]byte, error) {
	k, err := r.sealer()
	if err != nil {
		return nil, err
	}
	hdr := 1 + keyIDSize
	out := make([]byte, hdr+k.aead.NonceSize(), hdr+k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	out[0] = sealFormat
	copy(out[1:hdr], k.id[:])
	nonce := out[hdr:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return k.aead.Seal(out, nonce, plaintext, additionalData(out[:hdr], purpose)), nil
}

// open authenticates and decrypts a sealed value; nothing of it is parsed before.
func (r *keyring) open(purpose string, sealed []byte) ([]byte, error) {
	hdr := 1 + keyIDSize
	if len(sealed) < hdr || sealed[0] != sealFormat {
		return nil, errCookieFormat
	}
	k := r.opener(sealed[1:hdr])
	if k == nil {
		return nil, errCookieKey
	}
	ns := k.aead.NonceSize()
	if len(sealed) < hdr+ns+k.aead.Overhead() {
		return nil, errCookieFormat
	}
	pt, err := k.aead.Open(nil, sealed[hdr:hdr+ns], sealed[hdr+ns:], additionalData(sealed[:hdr], purpose))
	if err != nil {
		return nil, errCookieAuth
	}
	return pt, nil
}

func additionalData(hdr []byte, purpose string) []byte {
	return append(append(make([]byte, 0, len(hdr)+len(purpose)), hdr...), purpose...)
}

// CheckKeyFileMode refuses a key file that others may read or write, or that its group may
// write: 0600, 0400, 0640 and 0440 pass. Group read is allowed because that is how a
// Kubernetes Secret reaches a container that does not run as root (fsGroup: the files are
// root's, group-readable by the pod's group; deploy/kbs).
func CheckKeyFileMode(what, file string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if fi.Mode().Perm()&0o027 != 0 {
		return fmt.Errorf("%s %s: mode %04o, want no access for others and no write for the group (0600, 0640 or 0440)",
			what, file, fi.Mode().Perm())
	}
	return nil
}

// LoadSessionKeys reads a session key file: the raw current key (32 bytes), optionally
// followed by the previous one (64 bytes in all). Others must have no access to the file
// (CheckKeyFileMode).
func LoadSessionKeys(file string) ([][]byte, error) {
	if err := CheckKeyFileMode("session key file", file); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("session key file: %w", err)
	}
	if len(b) != SessionKeySize && len(b) != 2*SessionKeySize {
		return nil, fmt.Errorf("session key file %s: %d bytes, want %d (current key) or %d (current, then previous)",
			file, len(b), SessionKeySize, 2*SessionKeySize)
	}
	keys := [][]byte{b[:SessionKeySize]}
	if len(b) == 2*SessionKeySize {
		keys = append(keys, b[SessionKeySize:])
	}
	return keys, nil
}

// putString appends a string of at most 255 bytes with a one-byte length.
func putString(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// getString reads a string written by putString.
func getString(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

func putInt64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }
