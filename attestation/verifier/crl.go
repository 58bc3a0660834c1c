package verifier

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// ErrRevoked: a certificate of the evidence's chain is on its issuer's CRL. Errors that wrap it
// also wrap ErrUntrusted.
var ErrRevoked = errors.New("certificate revoked")

// crlSource gets AMD KDS CRLs (DER X.509 CRLs signed by the ARK): first from the collateral
// directory, which mirrors the KDS URL paths (https://kdsintf.amd.com/vcek/v1/Milan/crl is
// DIR/vcek/v1/Milan/crl); else, when a getter is set, from KDS, each kept until its nextUpdate.
// The CRLs it returns are not checked: checkSNPCRL does that on every use.
type crlSource struct {
	dir    string
	getter HTTPSGetter

	mu     sync.Mutex
	online map[string]*x509.RevocationList
}

func newCRLSource(dir string, getter HTTPSGetter) *crlSource {
	return &crlSource{dir: dir, getter: getter, online: map[string]*x509.RevocationList{}}
}

// get returns the CRL at link and where it came from (a file or the URL).
func (s *crlSource) get(ctx context.Context, link string, now time.Time) (*x509.RevocationList, string, error) {
	var file string
	if s.dir != "" {
		rel, err := collateralPath(link)
		if err != nil {
			return nil, "", err
		}
		file = filepath.Join(s.dir, rel)
		der, err := os.ReadFile(file)
		if err == nil {
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				return nil, file, fmt.Errorf("CRL %s: %w", file, err)
			}
			return crl, file, nil
		}
		if !errors.Is(err, os.ErrNotExist) || s.getter == nil {
			return nil, file, fmt.Errorf("no CRL for %s in the collateral directory: %w", link, err)
		}
	}
	if s.getter == nil {
		return nil, link, fmt.Errorf("no CRL for %s: no collateral directory and fetching is off", link)
	}
	s.mu.Lock()
	crl := s.online[link]
	s.mu.Unlock()
	if crl != nil && now.Before(crl.NextUpdate) {
		return crl, link, nil
	}
	_, der, err := s.getter.Get(ctx, link)
	if err != nil {
		if file != "" {
			return nil, link, fmt.Errorf("no CRL for %s: %s does not exist and fetching failed: %w", link, file, err)
		}
		return nil, link, fmt.Errorf("fetch CRL: %w", err)
	}
	if crl, err = x509.ParseRevocationList(der); err != nil {
		return nil, link, fmt.Errorf("CRL %s: %w", link, err)
	}
	s.mu.Lock()
	s.online[link] = crl
	s.mu.Unlock()
	return crl, link, nil
}

// collateralPath maps a collateral URL to its path under the collateral directory: the URL's
// path, then "?" and its query if it has one.
func collateralPath(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil {
		return "", fmt.Errorf("collateral URL %q: %w", link, err)
	}
	p := path.Clean("/" + u.Path)
	if p == "/" || strings.Contains(p, "..") {
		return "", fmt.Errorf("collateral URL %q has no usable path", link)
	}
	p = strings.TrimPrefix(p, "/")
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return filepath.FromSlash(p), nil
}

// snpRevocation checks the chain the endorsement key verified with (EK, ASK or ASVK, ARK)
// against the CRL of its product line: the CRL must be signed by that ARK and current, and
// must list neither the intermediate's nor the endorsement key's serial.
func (v *verifier) snpRevocation(ctx context.Context, c *snpCheck, now time.Time) error {
	ekDER := c.att.GetCertificateChain().GetVcekCert()
	if c.key == abi.VlekReportSigner {
		ekDER = c.att.GetCertificateChain().GetVlekCert()
	}
	ek, err := x509.ParseCertificate(ekDER)
	if err != nil {
		return fmt.Errorf("%w: %s certificate: %w", ErrMalformed, c.signer, err)
	}
	chain, line := verifiedSNPChain(c, ek, now)
	if len(chain) != 3 {
		return fmt.Errorf("%w: SEV-SNP %s: no chain to a trusted ARK for the revocation check", ErrUntrusted, c.signer)
	}
	link := kds.CrlLinkByKey(line, c.key)
	crl, src, err := v.crls.get(ctx, link, now)
	if err != nil {
		return fmt.Errorf("%w: SEV-SNP revocation check: %w", ErrUntrusted, err)
	}
	ica := "ASK"
	if c.key == abi.VlekReportSigner {
		ica = "ASVK"
	}
	if err := checkSNPCRL(crl, src, chain[2], now); err != nil {
		return fmt.Errorf("%w: SEV-SNP revocation check: %w", ErrUntrusted, err)
	}
	for _, r := range crl.RevokedCertificateEntries {
		for _, cert := range []struct {
			role string
			c    *x509.Certificate
		}{{ica, chain[1]}, {c.signer, chain[0]}} {
			if r.SerialNumber.Cmp(cert.c.SerialNumber) == 0 {
				return fmt.Errorf("%w: %w: SEV-SNP %s (serial %s) was revoked on %s by CRL %s (issued %s)",
					ErrUntrusted, ErrRevoked, cert.role, cert.c.SerialNumber.Text(16),
					r.RevocationTime.UTC().Format(time.RFC3339), src, crl.ThisUpdate.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}

// checkSNPCRL checks that crl (from src) is issued and signed by ark and current at now.
func checkSNPCRL(crl *x509.RevocationList, src string, ark *x509.Certificate, now time.Time) error {
	if !bytes.Equal(crl.RawIssuer, ark.RawSubject) && crl.Issuer.String() != ark.Subject.String() {
		return fmt.Errorf("CRL %s is issued by %q, not by the trusted %q", src, crl.Issuer, ark.Subject)
	}
	if err := crl.CheckSignatureFrom(ark); err != nil {
		return fmt.Errorf("CRL %s is not signed by the trusted %s: %w", src, ark.Subject.CommonName, err)
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if now.Before(crl.ThisUpdate) {
		return fmt.Errorf("CRL %s is not valid yet: thisUpdate %s is after now (%s)", src, ts(crl.ThisUpdate), ts(now))
	}
	if crl.NextUpdate.IsZero() {
		return fmt.Errorf("CRL %s has no nextUpdate: its freshness cannot be judged", src)
	}
	if now.After(crl.NextUpdate) {
		return fmt.Errorf("CRL %s is stale: its nextUpdate %s is before now (%s); get a current one from AMD KDS",
			src, ts(crl.NextUpdate), ts(now))
	}
	return nil
}

// verifiedSNPChain returns the chain (EK, intermediate, ARK) by which ek verifies to one of
// c.roots, and the product line of that ARK.
func verifiedSNPChain(c *snpCheck, ek *x509.Certificate, now time.Time) ([]*x509.Certificate, string) {
	for line, roots := range c.roots.TrustedRoots() {
		for _, root := range roots {
			opts := root.X509Options(now, c.key)
			if opts == nil {
				continue
			}
			if chains, err := ek.Verify(*opts); err == nil && len(chains) > 0 {
				return chains[0], line
			}
		}
	}
	return nil, ""
}
