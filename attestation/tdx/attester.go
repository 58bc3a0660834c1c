// Package tdx is Veil's Intel TDX support: the guest-side attester (quotes through configfs-tsm
// with go-tdx-guest), quote parsing that never panics, and Intel's SGX root embedded as the
// default trust anchor for PCK certificate chains.
package tdx

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/google/go-tdx-guest/client"

	"github.com/veil-runtime/veil/attestation/evidence"
)

// CCELPath is where Linux exposes the ACPI CCEL table's data: the CC event log.
const CCELPath = "/sys/firmware/acpi/tables/data/CCEL"

// Attester gets TDX quotes through configfs-tsm.
type Attester struct {
	qp *client.LinuxConfigFsQuoteProvider
}

// NewAttester returns an attester when configfs-tsm is usable.
func NewAttester() (*Attester, error) {
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("tdx attester: %w", err)
	}
	if err := qp.IsSupported(); err != nil {
		return nil, fmt.Errorf("tdx attester: configfs-tsm is not usable: %w (is this a TDX guest with configfs mounted?)", err)
	}
	return &Attester{qp: qp}, nil
}

// TEE returns "tdx".
func (a *Attester) TEE() string { return evidence.TEETDX }

// Evidence gets a quote carrying reportData and returns the TDX evidence JSON, with the CC event
// log when the kernel exposes it.
func (a *Attester) Evidence(ctx context.Context, reportData [64]byte) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	quote, err := a.qp.GetRawQuote(reportData)
	if err != nil {
		return nil, fmt.Errorf("tdx attester: get quote: %w", err)
	}
	ev := evidence.TDX{Quote: quote}
	if log, err := os.ReadFile(CCELPath); err == nil {
		ev.CCEventLog = log
	}
	out, err := ev.JSON()
	if err != nil {
		return nil, fmt.Errorf("tdx attester: %w", err)
	}
	return out, nil
}
