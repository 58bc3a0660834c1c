package sim

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/veil-runtime/veil/attestation/evidence"
)

// Attester is a simulated TEE guest: it implements the attester interface and returns genuine
// SNP or TDX evidence signed by an Authority. Its TEE is "snp" or "tdx": the evidence is in
// that TEE's format, and verifiers tell sim evidence from real by its chain.
type Attester struct {
	tee       string
	authority *Authority
	snp       SNPLaunch
	tdx       TDXLaunch
}

// NewSNPAttester returns a sim SNP guest launched with l. A zero ReportID is made random.
func NewSNPAttester(a *Authority, l SNPLaunch) (*Attester, error) {
	if a == nil || a.SNP == nil {
		return nil, errors.New("sim: no SNP authority")
	}
	if l.ReportID == ([32]byte{}) {
		if _, err := rand.Read(l.ReportID[:]); err != nil {
			return nil, fmt.Errorf("sim: report id: %w", err)
		}
	}
	return &Attester{tee: evidence.TEESNP, authority: a, snp: l}, nil
}

// NewTDXAttester returns a sim TDX guest launched with l.
func NewTDXAttester(a *Authority, l TDXLaunch) (*Attester, error) {
	if a == nil || a.TDX == nil {
		return nil, errors.New("sim: no TDX authority")
	}
	return &Attester{tee: evidence.TEETDX, authority: a, tdx: l}, nil
}

// TEE returns "snp" or "tdx".
func (a *Attester) TEE() string { return a.tee }

// Evidence returns evidence carrying reportData: SNP evidence with the VCEK in its certificate
// table, or TDX evidence without an event log.
func (a *Attester) Evidence(ctx context.Context, reportData [64]byte) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	var err error
	switch a.tee {
	case evidence.TEESNP:
		var report []byte
		if report, err = a.authority.SNP.Report(a.snp, reportData); err == nil {
			out, err = evidence.SNP{Report: report, CertChain: a.authority.SNP.CertChain()}.JSON()
		}
	default:
		var quote []byte
		if quote, err = a.authority.TDX.Quote(a.tdx, reportData); err == nil {
			out, err = evidence.TDX{Quote: quote}.JSON()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sim: evidence: %w", err)
	}
	return out, nil
}
