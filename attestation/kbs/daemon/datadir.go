package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/veil-runtime/veil/attestation/kbswire/admin"
)

// Layout names the files under the data directory. Every path is absolute.
type Layout struct {
	Dir string
	// TokenKey is the P-256 key (PKCS #8 PEM, 0600) that signs attestation tokens.
	TokenKey string
	// TokenKeyConfigured says that TokenKey is the operator's file (token_key_file), outside
	// the data directory: Init never makes it.
	TokenKeyConfigured bool
	// AdminPrivateKey is the administrator's Ed25519 key (PKCS #8 PEM, 0600), made on first
	// start when no administrator key is configured. Copy it to the administrator and delete it.
	AdminPrivateKey string
	// AdminPublicKey is the administrator's public key that the KBS trusts.
	AdminPublicKey string
	// Resources is the directory of the resource store.
	Resources string
	// ResourcePolicy and AttestationPolicy are the Rego policies (default ones written on first
	// start); ReferenceValues the appraisal's reference values.
	ResourcePolicy, AttestationPolicy, ReferenceValues string
	// RepositoryBindings holds the initdata digests bound to each repository (the
	// administrator's POST /kbs/v0/repository-binding/<repository>).
	RepositoryBindings string
}

// NewLayout returns the layout of dir.
func NewLayout(dir string) (Layout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Layout{}, fmt.Errorf("data directory: %w", err)
	}
	return Layout{
		Dir:                abs,
		TokenKey:           filepath.Join(abs, "token-signing-key.pem"),
		AdminPrivateKey:    filepath.Join(abs, "admin", "admin-private-key.pem"),
		AdminPublicKey:     filepath.Join(abs, "admin", "admin-public-key.pem"),
		Resources:          filepath.Join(abs, "resources"),
		ResourcePolicy:     filepath.Join(abs, "policy", "resource-policy.rego"),
		AttestationPolicy:  filepath.Join(abs, "policy", "attestation-policy.rego"),
		ReferenceValues:    filepath.Join(abs, "reference-values.json"),
		RepositoryBindings: filepath.Join(abs, "policy", "repository-bindings.json"),
	}, nil
}

// Init creates what is missing: the directories (0700), the token-signing key and, when
// makeAdmin is set and no administrator public key exists, an administrator key pair. It
// returns the files it created.
func (l Layout) Init(makeAdmin bool) (created []string, err error) {
	for _, d := range []string{l.Dir, filepath.Dir(l.AdminPublicKey), l.Resources, filepath.Dir(l.ResourcePolicy)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	// A configured token key is the operator's file: checked and read by the attestation
	// service, never made here.
	if !l.TokenKeyConfigured {
		if _, err := os.Stat(l.TokenKey); errors.Is(err, os.ErrNotExist) {
			if err := writeTokenKey(l.TokenKey); err != nil {
				return nil, err
			}
			created = append(created, l.TokenKey)
		} else if err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
	}
	if !makeAdmin {
		return created, nil
	}
	if _, err := os.Stat(l.AdminPublicKey); errors.Is(err, os.ErrNotExist) {
		if _, err := admin.GenerateKeyPair(l.AdminPrivateKey, l.AdminPublicKey); err != nil {
			return created, err
		}
		created = append(created, l.AdminPrivateKey, l.AdminPublicKey)
	} else if err != nil {
		return created, fmt.Errorf("admin key: %w", err)
	}
	return created, nil
}

func writeTokenKey(file string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("token key %s: %w", file, err)
	}
	return nil
}
