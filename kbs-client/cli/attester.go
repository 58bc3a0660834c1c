package cli

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/sim"
	"github.com/veil-runtime/veil/attestation/snp"
	"github.com/veil-runtime/veil/attestation/tdx"
	"github.com/veil-runtime/veil/initdata"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// Veil's attester interface and the client's are the same shape.
var _ kbsclient.Attester = attester.Attester(nil)

// attester returns the attester chosen by --tee, and the initdata to send.
func (g *globals) attester() (kbsclient.Attester, *protocol.InitData, error) {
	init, err := g.initData()
	if err != nil {
		return nil, nil, err
	}
	switch g.tee {
	case "snp":
		a, err := snp.NewAttester()
		return a, init, err
	case "tdx":
		a, err := tdx.NewAttester()
		return a, init, err
	case "sim":
		a, err := g.simAttester(init)
		return a, init, err
	case "":
		return nil, nil, errors.New("--tee is required: snp, tdx or sim")
	default:
		return nil, nil, fmt.Errorf("--tee %q: want snp, tdx or sim", g.tee)
	}
}

// simAttester makes a simulated guest: its host data (SNP HOST_DATA, TDX MRCONFIGID) is the
// initdata digest, as a real launch would set it, and its measurement comes from the flag.
func (g *globals) simAttester(init *protocol.InitData) (kbsclient.Attester, error) {
	if g.simAuthority == "" {
		return nil, errors.New("--tee sim needs --sim-authority (the sim-authority.pem of the guest image)")
	}
	auth, err := sim.LoadAuthority(g.simAuthority)
	if err != nil {
		return nil, fmt.Errorf("--sim-authority: %w", err)
	}
	var measurement [48]byte
	if g.simMeasure != "" {
		m, err := hex.DecodeString(g.simMeasure)
		if err != nil || len(m) != len(measurement) {
			return nil, fmt.Errorf("--sim-measurement: want %d bytes of hex", len(measurement))
		}
		copy(measurement[:], m)
	}
	var digest []byte
	if init != nil {
		doc, err := initdata.ParseFormat(init.Format, []byte(init.Body))
		if err != nil {
			return nil, fmt.Errorf("--initdata: %w", err)
		}
		digest = doc.Digest()
	}
	switch g.simTEE {
	case "snp":
		l := sim.SNPLaunch{Measurement: measurement}
		copy(l.HostData[:], initdata.SNPHostData(digest))
		return sim.NewSNPAttester(auth, l)
	case "tdx":
		l := sim.TDXLaunch{MRTD: measurement}
		copy(l.MRConfigID[:], initdata.TDXMRConfigID(digest))
		return sim.NewTDXAttester(auth, l)
	default:
		return nil, fmt.Errorf("--sim-tee %q: want snp or tdx", g.simTEE)
	}
}
