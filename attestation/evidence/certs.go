package evidence

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// ParseCertificatesPEM returns the certificates of the CERTIFICATE blocks in data, in order,
// skipping blocks of other types and text between blocks. It checks nothing but their
// encoding: which ones are trusted roots is the caller's business. An error names the
// certificate that does not parse (counting from 1); no certificate at all is not an error.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
}
