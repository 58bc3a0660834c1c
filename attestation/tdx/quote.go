package tdx

import (
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/google/go-tdx-guest/abi"
	pb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/veil-runtime/veil/attestation/evidence"
)

// intelRootPEM is Intel's SGX Root CA (the same certificate go-tdx-guest embeds).
//
//go:embed intel_sgx_root.pem
var intelRootPEM []byte

// IntelRootPEM returns Intel's SGX Root CA certificate, PEM encoded.
func IntelRootPEM() []byte { return append([]byte(nil), intelRootPEM...) }

// DefaultRoots returns a pool holding Intel's SGX Root CA.
func DefaultRoots() *x509.CertPool {
	pool, err := ParseRoots(intelRootPEM)
	if err != nil {
		panic(fmt.Sprintf("tdx: embedded Intel SGX root does not parse: %v", err))
	}
	return pool
}

// ParseRoots returns a pool of the PEM certificates in data; at least one is required.
func ParseRoots(data []byte) (*x509.CertPool, error) {
	certs, err := evidence.ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("tdx roots: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("tdx roots: no certificate in the bundle")
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

// ParseQuote parses a raw version 4 quote. go-tdx-guest's parser indexes some length fields
// without bounds checks, so a panic there is returned as an error.
func ParseQuote(raw []byte) (quote *pb.QuoteV4, err error) {
	defer func() {
		if r := recover(); r != nil {
			quote, err = nil, fmt.Errorf("tdx quote is malformed: %v", r)
		}
	}()
	q, err := abi.QuoteToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("tdx quote: %w", err)
	}
	v4, ok := q.(*pb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("tdx quote: unsupported quote type %T", q)
	}
	return v4, nil
}

// PCKChain returns the PCK leaf, intermediate and root certificates the quote carries.
func PCKChain(q *pb.QuoteV4) ([]*x509.Certificate, error) {
	data := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tdx PCK chain: %w", err)
		}
		out = append(out, cert)
	}
	if len(out) != 3 {
		return nil, fmt.Errorf("tdx PCK chain has %d certificates, want 3 (PCK, intermediate, root)", len(out))
	}
	return out, nil
}
