// Package daemon runs veil-kbs: it reads the configuration (a TOML file and flags), prepares
// the data directory on first start (token-signing key, administrator key pair, resource
// store, default policies), builds the attestation service from Veil's verifier, appraisal
// and token packages, and serves the KBS over HTTP or HTTPS. cmd/veil-kbs is a thin main
// around Run.
package daemon

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is veil-kbs's configuration. Empty paths take their default under the data
// directory; see docs/kbs.md.
type Config struct {
	// Listen is the address to serve on (default 127.0.0.1:8080).
	Listen string `toml:"listen"`
	// Data is the data directory (required).
	Data string `toml:"data"`
	// TLSCert and TLSKey are PEM files; when both are set the KBS serves HTTPS.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// AdminPublicKeys are the administrators' Ed25519 public keys (PEM). Empty: the key pair
	// under the data directory, made on first start.
	AdminPublicKeys []string `toml:"admin_public_keys"`
	// ResourcePolicy is the Rego resource policy file (default DATA/policy/resource-policy.rego).
	ResourcePolicy string `toml:"resource_policy"`
	// SessionTTL is the lifetime of a challenge cookie (default 5m).
	SessionTTL Duration `toml:"session_ttl"`
	// SessionKeyFile holds the key that seals challenge cookies (32 bytes, then optionally
	// the previous key; mode 0600), shared by replicas. Empty: a random key rotated every
	// session_ttl.
	SessionKeyFile string `toml:"session_key_file"`
	// TokenKeyFile is the P-256 key (PKCS #8 or SEC 1 PEM; no access for others) that signs
	// attestation tokens, shared by replicas so that each accepts the others' tokens. Empty:
	// DATA/token-signing-key.pem, made on first start.
	TokenKeyFile string `toml:"token_key_file"`
	// MaxSpentNonces bounds the record of spent challenge nonces (default 1,000,000).
	MaxSpentNonces int `toml:"max_spent_nonces"`
	// AuthRate and AuthBurst are each client's token bucket on auth and on attest (defaults
	// 10 per second, burst 50); a negative rate turns the limits off.
	AuthRate  float64 `toml:"auth_rate"`
	AuthBurst int     `toml:"auth_burst"`
	// MaxClients bounds the clients (source addresses) each limiter tracks (default 10,000);
	// beyond it new clients share one bucket.
	MaxClients int `toml:"max_clients"`
	// MaxSessions is deprecated and ignored: sessions no longer live in a table.
	MaxSessions int `toml:"max_sessions"`

	Attestation AttestationConfig `toml:"attestation"`
}

// AttestationConfig configures verification and appraisal.
type AttestationConfig struct {
	// SNPRoots and TDXRoots are PEM files of trusted roots replacing AMD's and Intel's.
	SNPRoots string `toml:"snp_roots"`
	TDXRoots string `toml:"tdx_roots"`
	// SimSNPRoots and SimTDXRoots are the roots of a sim authority (sim-snp-roots.pem,
	// sim-tdx-root.pem). Simulated evidence is trusted only when they are given.
	SimSNPRoots string `toml:"sim_snp_roots"`
	SimTDXRoots string `toml:"sim_tdx_roots"`
	// ReferenceValues is the appraisal's reference values file (default
	// DATA/reference-values.json).
	ReferenceValues string `toml:"reference_values"`
	// Policy is the Rego appraisal policy (default DATA/policy/attestation-policy.rego).
	Policy string `toml:"policy"`
	// TokenTTL is the lifetime of attestation tokens (default 5m).
	TokenTTL Duration `toml:"token_ttl"`
	// FetchCollateral lets the verifiers fetch certificates and collateral from AMD and Intel.
	FetchCollateral bool `toml:"fetch_collateral"`
	// CheckRevocations checks the SNP chain against AMD's CRLs and the TDX PCK chain against
	// Intel's CRLs (from CollateralDir, else fetched with FetchCollateral). Off by default.
	CheckRevocations bool `toml:"check_revocations"`
	// CollateralDir holds collateral for offline checks, laid out as the vendors' URL paths
	// (see verifier.Config.CollateralDir and docs/attestation.md). TDX evidence is checked
	// against its Intel PCS collateral whenever it is set.
	CollateralDir string `toml:"collateral_dir"`
}

// Duration is a time.Duration written as "5m" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// LoadFile reads a TOML configuration file; unknown keys are an error.
func LoadFile(path string) (*Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("config %s: unknown keys %v", path, und)
	}
	return &c, nil
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// ParseFlags reads the command line: --config FILE first, then flags override its values.
func ParseFlags(name string, args []string) (*Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var (
		file                 string
		c                    Config
		admins               stringList
		sessionTTL, tokenTTL time.Duration
	)
	fs.StringVar(&file, "config", "", "TOML configuration file (flags override it)")
	fs.StringVar(&c.Listen, "listen", "", "address to serve on (default 127.0.0.1:8080)")
	fs.StringVar(&c.Data, "data", "", "data directory: keys, resources, policies (created on first start)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate (PEM); with --tls-key, serve HTTPS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key (PEM)")
	fs.Var(&admins, "admin-public-key", "administrator Ed25519 public key (PEM); repeatable")
	fs.StringVar(&c.ResourcePolicy, "resource-policy", "", "Rego resource policy file")
	fs.DurationVar(&sessionTTL, "session-ttl", 0, "session lifetime (default 5m)")
	fs.StringVar(&c.SessionKeyFile, "session-key-file", "", "key sealing the session cookies (32 bytes, optionally then the previous key; mode 0600); default a random key rotated every session-ttl")
	fs.StringVar(&c.TokenKeyFile, "token-key-file", "", "P-256 key (PEM) signing the attestation tokens, shared by replicas; default DATA/token-signing-key.pem, made on first start")
	fs.IntVar(&c.MaxSpentNonces, "max-spent-nonces", 0, "bound of the record of spent challenge nonces (default 1000000)")
	fs.Float64Var(&c.AuthRate, "auth-rate", 0, "requests per second of each client on auth and on attest (default 10; negative: no limit)")
	fs.IntVar(&c.AuthBurst, "auth-burst", 0, "burst of each client on auth and on attest (default 50)")
	fs.IntVar(&c.MaxClients, "max-clients", 0, "clients (source addresses) each rate limiter tracks; beyond them new clients share one bucket (default 10000)")
	fs.IntVar(&c.MaxSessions, "max-sessions", 0, "deprecated and ignored: sessions hold no server state")
	a := &c.Attestation
	fs.StringVar(&a.SNPRoots, "snp-roots", "", "trusted AMD roots (PEM), replacing the built-in ones")
	fs.StringVar(&a.TDXRoots, "tdx-roots", "", "trusted Intel roots (PEM), replacing the built-in one")
	fs.StringVar(&a.SimSNPRoots, "sim-snp-roots", "", "trust simulated SNP evidence of this sim authority (sim-snp-roots.pem)")
	fs.StringVar(&a.SimTDXRoots, "sim-tdx-roots", "", "trust simulated TDX evidence of this sim authority (sim-tdx-root.pem)")
	fs.StringVar(&a.ReferenceValues, "reference-values", "", "reference values file")
	fs.StringVar(&a.Policy, "attestation-policy", "", "Rego appraisal policy file")
	fs.DurationVar(&tokenTTL, "token-ttl", 0, "attestation token lifetime (default 5m)")
	fs.BoolVar(&a.FetchCollateral, "fetch-collateral", false, "fetch certificates and collateral from AMD and Intel")
	fs.BoolVar(&a.CheckRevocations, "check-revocations", false, "check revocations: SNP against AMD's CRLs, TDX against Intel's (from --collateral-dir, else fetched)")
	fs.StringVar(&a.CollateralDir, "collateral-dir", "", "directory of collateral for offline checks, laid out as AMD KDS's and Intel PCS's URL paths (docs/attestation.md); TDX evidence is checked against its PCS collateral when set")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	base := &Config{}
	if file != "" {
		var err error
		if base, err = LoadFile(file); err != nil {
			return nil, err
		}
	}
	c.AdminPublicKeys = admins
	c.SessionTTL.Duration, c.Attestation.TokenTTL.Duration = sessionTTL, tokenTTL
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	base.merge(&c, given)
	return base, base.Validate()
}

// merge copies the values set in o (the flags) over c (the file): a value other than its
// zero, and a boolean flag when given (--check-revocations=false turns off what the file
// turned on).
func (c *Config) merge(o *Config, given map[string]bool) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Listen, o.Listen)
	set(&c.Data, o.Data)
	set(&c.TLSCert, o.TLSCert)
	set(&c.TLSKey, o.TLSKey)
	set(&c.ResourcePolicy, o.ResourcePolicy)
	if len(o.AdminPublicKeys) > 0 {
		c.AdminPublicKeys = o.AdminPublicKeys
	}
	if o.SessionTTL.Duration != 0 {
		c.SessionTTL = o.SessionTTL
	}
	set(&c.SessionKeyFile, o.SessionKeyFile)
	set(&c.TokenKeyFile, o.TokenKeyFile)
	if o.MaxSpentNonces != 0 {
		c.MaxSpentNonces = o.MaxSpentNonces
	}
	if o.AuthRate != 0 {
		c.AuthRate = o.AuthRate
	}
	if o.AuthBurst != 0 {
		c.AuthBurst = o.AuthBurst
	}
	if o.MaxClients != 0 {
		c.MaxClients = o.MaxClients
	}
	if o.MaxSessions != 0 {
		c.MaxSessions = o.MaxSessions
	}
	a, oa := &c.Attestation, &o.Attestation
	set(&a.SNPRoots, oa.SNPRoots)
	set(&a.TDXRoots, oa.TDXRoots)
	set(&a.SimSNPRoots, oa.SimSNPRoots)
	set(&a.SimTDXRoots, oa.SimTDXRoots)
	set(&a.ReferenceValues, oa.ReferenceValues)
	set(&a.Policy, oa.Policy)
	if oa.TokenTTL.Duration != 0 {
		a.TokenTTL = oa.TokenTTL
	}
	if given["fetch-collateral"] {
		a.FetchCollateral = oa.FetchCollateral
	}
	if given["check-revocations"] {
		a.CheckRevocations = oa.CheckRevocations
	}
	set(&a.CollateralDir, oa.CollateralDir)
}

// Validate checks the configuration and fills in the defaults that do not depend on the data
// directory. Every problem is reported.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.Data == "" {
		errs = append(errs, errors.New("no data directory (--data)"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.SessionTTL.Duration < 0 || c.Attestation.TokenTTL.Duration < 0 || c.MaxSessions < 0 ||
		c.MaxSpentNonces < 0 || c.AuthBurst < 0 || c.MaxClients < 0 {
		errs = append(errs, errors.New("negative session-ttl, token-ttl, max-sessions, max-spent-nonces, auth-burst or max-clients"))
	}
	for _, f := range append([]string{c.TLSCert, c.TLSKey, c.ResourcePolicy, c.SessionKeyFile, c.TokenKeyFile, c.Attestation.SNPRoots,
		c.Attestation.TDXRoots, c.Attestation.SimSNPRoots, c.Attestation.SimTDXRoots, c.Attestation.CollateralDir}, c.AdminPublicKeys...) {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
	}
	if a := c.Attestation; a.CheckRevocations && !a.FetchCollateral && a.CollateralDir == "" {
		errs = append(errs, errors.New("check-revocations needs collateral-dir or fetch-collateral: where the CRLs come from"))
	}
	return errors.Join(errs...)
}
