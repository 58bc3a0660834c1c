// Package snp is Veil's AMD SEV-SNP support: the guest-side attester (go-sev-guest's
// configfs-tsm or /dev/sev-guest quote provider, with the certificate table), the conversion of
// SNP evidence into go-sev-guest's types, and the sets of trusted AMD roots the verifier uses.
package snp

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/go-sev-guest/client"

	"github.com/veil-runtime/veil/attestation/evidence"
	"github.com/veil-runtime/veil/attestation/layout"
)

// Attester gets SNP evidence from the guest's AMD secure processor.
type Attester struct {
	qp client.QuoteProvider
}

// NewAttester returns an attester on the first quote provider the kernel supports:
// configfs-tsm, then /dev/sev-guest.
func NewAttester() (*Attester, error) {
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("snp attester: %w (is this an SEV-SNP guest with sev-guest loaded?)", err)
	}
	return &Attester{qp: qp}, nil
}

// TEE returns "snp".
func (a *Attester) TEE() string { return evidence.TEESNP }

// Evidence asks for an extended report carrying reportData and returns the SNP evidence JSON.
func (a *Attester) Evidence(ctx context.Context, reportData [64]byte) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	raw, err := a.qp.GetRawQuote(reportData)
	if err != nil {
		return nil, fmt.Errorf("snp attester: get report: %w", err)
	}
	return EvidenceFromQuote(raw)
}

// EvidenceFromQuote builds the evidence JSON from what a go-sev-guest quote provider returns:
// the report followed by the certificate table.
func EvidenceFromQuote(raw []byte) (json.RawMessage, error) {
	if len(raw) < layout.SNPReportSize {
		return nil, fmt.Errorf("snp attester: quote has %d bytes, less than a report", len(raw))
	}
	chain, err := CertTableEntries(raw[layout.SNPReportSize:])
	if err != nil {
		return nil, err
	}
	out, err := evidence.SNP{Report: raw[:layout.SNPReportSize], CertChain: chain}.JSON()
	if err != nil {
		return nil, fmt.Errorf("snp attester: %w", err)
	}
	return out, nil
}
