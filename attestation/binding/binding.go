// Package binding computes the value that ties TEE evidence to one KBS session: the
// report_data that the guest asks its TEE to sign, and that the KBS recomputes before it trusts
// the evidence. See PROTOCOLS.md ("Binding the evidence to the session", KBS protocol 0.4.0).
package binding

import (
	"crypto/sha512"
	"encoding/json"
	"fmt"

	"github.com/gowebpki/jcs"
)

// ReportDataSize is the size of SNP REPORT_DATA and TDX REPORTDATA.
const ReportDataSize = 64

// Canonical returns the RFC 8785 (JCS) canonical form of a JSON document.
func Canonical(doc []byte) ([]byte, error) {
	out, err := jcs.Transform(doc)
	if err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	return out, nil
}

// ReportData returns SHA-384(JCS({"tee-pubkey": jwk, "nonce": nonce, "additional-evidence":
// additional})) followed by 16 zero bytes. The nonce is hashed as the string the KBS sent, not
// decoded; jwk is the JSON of the tee-pubkey exactly as the attest request carries it.
func ReportData(nonce string, jwk json.RawMessage, additional string) ([ReportDataSize]byte, error) {
	var out [ReportDataSize]byte
	if !json.Valid(jwk) {
		return out, fmt.Errorf("tee-pubkey is not valid JSON")
	}
	doc, err := json.Marshal(struct {
		TEEPubKey  json.RawMessage `json:"tee-pubkey"`
		Nonce      string          `json:"nonce"`
		Additional string          `json:"additional-evidence"`
	}{jwk, nonce, additional})
	if err != nil {
		return out, err
	}
	canon, err := Canonical(doc)
	if err != nil {
		return out, err
	}
	sum := sha512.Sum384(canon)
	copy(out[:], sum[:])
	return out, nil
}
