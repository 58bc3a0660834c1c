package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbs"
	"github.com/veil-runtime/veil/attestation/kbs/resourcepolicy"
	"github.com/veil-runtime/veil/attestation/kbs/store"
	"github.com/veil-runtime/veil/attestation/kbswire/admin"
)

// Daemon is a prepared veil-kbs: the data directory is set up and the server built.
type Daemon struct {
	cfg    *Config
	layout Layout
	server *kbs.Server
	store  *store.Dir
	tls    *tls.Config
}

// Prepare sets up the data directory (creating what is missing and logging where it is) and
// builds the server.
func Prepare(ctx context.Context, cfg *Config) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lay, err := NewLayout(cfg.Data)
	if err != nil {
		return nil, err
	}
	if cfg.TokenKeyFile != "" {
		if lay.TokenKey, err = filepath.Abs(cfg.TokenKeyFile); err != nil {
			return nil, fmt.Errorf("token key file: %w", err)
		}
		lay.TokenKeyConfigured = true
	}
	created, err := lay.Init(len(cfg.AdminPublicKeys) == 0)
	if err != nil {
		return nil, err
	}
	logCreated(ctx, lay, created)
	d := &Daemon{cfg: cfg, layout: lay}
	if d.tls, err = loadTLS(cfg); err != nil {
		return nil, err
	}
	if d.store, err = store.OpenDir(lay.Resources); err != nil {
		return nil, err
	}
	if d.server, err = d.build(ctx); err != nil {
		d.store.Close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) build(ctx context.Context) (*kbs.Server, error) {
	polFile := d.cfg.ResourcePolicy
	if polFile == "" {
		polFile = d.layout.ResourcePolicy
	}
	_, statErr := os.Stat(polFile)
	pol, err := resourcepolicy.Open(ctx, polFile, d.layout.RepositoryBindings)
	if err != nil {
		return nil, err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		log.G(ctx).WithField("file", polFile).Info("veil-kbs: created on first start")
	}
	keyFiles := d.cfg.AdminPublicKeys
	if len(keyFiles) == 0 {
		keyFiles = []string{d.layout.AdminPublicKey}
	}
	var keys []ed25519.PublicKey
	for _, f := range keyFiles {
		k, err := admin.LoadPublicKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	svc, err := newAttestation(ctx, d.cfg, d.layout)
	if err != nil {
		return nil, err
	}
	log.G(ctx).WithFields(log.Fields{
		"data": d.layout.Dir, "resources": d.layout.Resources, "resource_policy": polFile,
		"repository_bindings": d.layout.RepositoryBindings,
		"admin_public_keys":   keyFiles, "token_key": d.layout.TokenKey,
	}).Info("veil-kbs: configuration")
	var sessionKeys [][]byte
	if f := d.cfg.SessionKeyFile; f != "" {
		if sessionKeys, err = kbs.LoadSessionKeys(f); err != nil {
			return nil, err
		}
		log.G(ctx).WithFields(log.Fields{"file": f, "keys": len(sessionKeys)}).Info("veil-kbs: session keys loaded")
	}
	if d.cfg.MaxSessions != 0 {
		log.G(ctx).Warn("veil-kbs: max_sessions (--max-sessions) is deprecated and ignored: " +
			"sessions hold no server state; see max_spent_nonces, auth_rate and auth_burst")
	}
	return kbs.New(kbs.Options{
		Attestation: svc, Tokens: svc, Resources: d.store, Policy: pol, Admin: admin.NewVerifier(keys...),
		SessionTTL: d.cfg.SessionTTL.Duration, SessionKeys: sessionKeys, MaxSpentNonces: d.cfg.MaxSpentNonces,
		AuthRate: d.cfg.AuthRate, AuthBurst: d.cfg.AuthBurst, MaxClients: d.cfg.MaxClients,
	})
}

func logCreated(ctx context.Context, lay Layout, created []string) {
	for _, f := range created {
		log.G(ctx).WithField("file", f).Info("veil-kbs: created on first start")
		if f == lay.AdminPrivateKey {
			log.G(ctx).WithField("file", f).Warn("veil-kbs: the administrator's private key is in this file: " +
				"copy it to the administrator (veil-kbs-client --admin-key) and delete it from this machine")
		}
	}
}

func loadTLS(cfg *Config) (*tls.Config, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Layout returns the data directory's layout.
func (d *Daemon) Layout() Layout { return d.layout }

// Serve serves on ln until ctx is done.
func (d *Daemon) Serve(ctx context.Context, ln net.Listener) error {
	defer d.store.Close()
	scheme := "http"
	if d.tls != nil {
		scheme = "https"
	}
	log.G(ctx).WithField("url", scheme+"://"+ln.Addr().String()).Info("veil-kbs: serving")
	return d.server.Serve(ctx, ln, d.tls)
}

// Run prepares the daemon, listens on cfg.Listen and serves until ctx is done.
func Run(ctx context.Context, cfg *Config) error {
	d, err := Prepare(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		d.store.Close()
		return fmt.Errorf("listen: %w", err)
	}
	return d.Serve(ctx, ln)
}
