package keyprovider

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/kbs-client/keywrap"
)

// kekStore keeps KEKs as files dir/<repo>/<type>/<tag> (0600 in 0700 directories). A lock
// file serialises every process that makes a key: skopeo may start one provider command per
// layer, at once, and they must all wrap under the same new KEK.
type kekStore struct{ dir string }

// path is the file of the KEK named by uri (a checked kbs:///repo/type/tag URI).
func (s *kekStore) path(uri string) string {
	p, _ := protocol.ParseResourceURI(uri)
	return filepath.Join(s.dir, p.Repository, p.Type, p.Tag)
}

// get returns the kept KEK of uri.
func (s *kekStore) get(uri string) ([]byte, error) {
	kek, err := readKEK(s.path(uri))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keyprovider: no key-encryption key %s on this machine (%s): give its file with keyid=%s::keypath=FILE", uri, s.path(uri), uri)
	}
	return kek, err
}

// getOrMake returns the kept KEK of uri, or makes one, hands it to publish (the KBS) and keeps
// it once publish succeeded. made says which.
func (s *kekStore) getOrMake(uri string, publish func([]byte) error) (kek []byte, made bool, err error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("keyprovider: KEK directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("keyprovider: KEK directory: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, false, fmt.Errorf("keyprovider: lock %s: %w", lock.Name(), err)
	}
	defer func() { _ = unix.Flock(int(lock.Fd()), unix.LOCK_UN) }()

	file := s.path(uri)
	kek, err = readKEK(file)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kek, false, err
	}
	kek = make([]byte, keywrap.KEKSize)
	if _, err := rand.Read(kek); err != nil {
		return nil, false, err
	}
	if err := publish(kek); err != nil {
		clear(kek)
		return nil, false, fmt.Errorf("keyprovider: new key-encryption key %s: %w", uri, err)
	}
	if err := writeKEK(file, kek); err != nil {
		clear(kek)
		return nil, false, fmt.Errorf("keyprovider: key-encryption key %s is in the KBS but could not be kept here: %w", uri, err)
	}
	return kek, true, nil
}

// readKEK reads a KEK file: exactly KEKSize bytes, readable by its owner only.
func readKEK(file string) ([]byte, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("keyprovider: key-encryption key file %s is readable by others (mode %v): chmod 600 it", file, fi.Mode().Perm())
	}
	kek, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if len(kek) != keywrap.KEKSize {
		clear(kek)
		return nil, fmt.Errorf("keyprovider: key-encryption key file %s is %d bytes, want %d raw bytes", file, len(kek), keywrap.KEKSize)
	}
	return kek, nil
}

// writeKEK writes a new KEK file atomically, never replacing one.
func writeKEK(file string, kek []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".kek-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(kek); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), file) // fails if the file exists
}
