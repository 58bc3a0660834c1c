package snp

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-sev-guest/verify/trust"

	"github.com/veil-runtime/veil/attestation/evidence"
)

// Roots is a set of trusted AMD certificate authorities: per product line ("Milan", "Genoa",
// "Turin"), one or more ARKs, each with the ASK (certifies VCEKs) and/or ASVK (certifies VLEKs)
// it signed. The zero value trusts nothing.
type Roots struct {
	lines map[string][]*trust.AMDRootCerts
}

// DefaultRoots returns AMD's own roots for Milan, Genoa and Turin, VCEK and VLEK, as embedded in
// go-sev-guest (verify/trust).
func DefaultRoots() *Roots {
	bundles := [][]byte{
		trust.AskArkMilanVcekBytes, trust.AskArkMilanVlekBytes,
		trust.AskArkGenoaVcekBytes, trust.AskArkGenoaVlekBytes,
		trust.AskArkTurinVcekBytes, trust.AskArkTurinVlekBytes,
	}
	r, err := ParseRoots(bytes.Join(bundles, []byte("\n")))
	if err != nil {
		panic(fmt.Sprintf("snp: go-sev-guest's embedded AMD roots do not parse: %v", err))
	}
	return r
}

// ParseRoots reads PEM certificates: ARKs (self-signed, CN "ARK-<line>"), ASKs (CN "SEV-<line>")
// and ASVKs (CN "SEV-VLEK-<line>"), in any order. KDS cert_chain files (ASK then ARK) can be
// concatenated. Every ASK and ASVK must be signed by an ARK of the bundle.
func ParseRoots(pemData []byte) (*Roots, error) {
	certs, err := evidence.ParseCertificatesPEM(pemData)
	if err != nil {
		return nil, fmt.Errorf("snp roots: %w", err)
	}
	var arks, icas []*x509.Certificate
	for _, cert := range certs {
		if strings.HasPrefix(cert.Subject.CommonName, "ARK-") {
			arks = append(arks, cert)
		} else {
			icas = append(icas, cert)
		}
	}
	if len(arks) == 0 {
		return nil, errors.New("snp roots: no ARK certificate (CN ARK-<product line>) in the bundle")
	}
	r := &Roots{lines: map[string][]*trust.AMDRootCerts{}}
	byArk := map[string]*trust.AMDRootCerts{}
	for _, ark := range arks {
		if byArk[string(ark.Raw)] != nil {
			continue
		}
		line := strings.TrimPrefix(ark.Subject.CommonName, "ARK-")
		root := trust.AMDRootCertsProduct(line)
		root.ProductCerts = &trust.ProductCerts{Ark: ark}
		byArk[string(ark.Raw)] = root
		r.lines[line] = append(r.lines[line], root)
	}
	for _, ica := range icas {
		if err := r.addIntermediate(ica); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *Roots) addIntermediate(ica *x509.Certificate) error {
	cn := ica.Subject.CommonName
	vlek := strings.HasPrefix(cn, "SEV-VLEK-")
	line := strings.TrimPrefix(strings.TrimPrefix(cn, "SEV-VLEK-"), "SEV-")
	if !strings.HasPrefix(cn, "SEV-") {
		return fmt.Errorf("snp roots: certificate %q is neither an ARK, an ASK nor an ASVK", cn)
	}
	for _, root := range r.lines[line] {
		if ica.CheckSignatureFrom(root.ProductCerts.Ark) != nil {
			continue
		}
		if vlek {
			root.ProductCerts.Asvk = ica
		} else {
			root.ProductCerts.Ask = ica
		}
		return nil
	}
	return fmt.Errorf("snp roots: %q is not signed by any ARK-%s of the bundle", cn, line)
}

// Merge returns the union of r and other.
func (r *Roots) Merge(other *Roots) *Roots {
	out := &Roots{lines: map[string][]*trust.AMDRootCerts{}}
	for _, src := range []*Roots{r, other} {
		if src == nil {
			continue
		}
		for line, roots := range src.lines {
			out.lines[line] = append(out.lines[line], roots...)
		}
	}
	return out
}

// ProductLines returns the product lines with at least one root, sorted.
func (r *Roots) ProductLines() []string {
	var out []string
	if r != nil {
		for line := range r.lines {
			out = append(out, line)
		}
	}
	sort.Strings(out)
	return out
}

// Empty reports whether r trusts nothing.
func (r *Roots) Empty() bool { return r == nil || len(r.lines) == 0 }

// TrustedRoots returns the roots in go-sev-guest's verify.Options form.
func (r *Roots) TrustedRoots() map[string][]*trust.AMDRootCerts {
	out := map[string][]*trust.AMDRootCerts{}
	if r != nil {
		for line, roots := range r.lines {
			out[line] = append([]*trust.AMDRootCerts(nil), roots...)
		}
	}
	return out
}
