package launch

import (
	"context"
	"fmt"
	"time"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/attestation/sim"
)

// Attester returns the attester of the TEE the boot checked the initdata with (c.TEE), for
// the guest's attestations to a KBS (agent/cdh): nil, and no error, in a plain VM (tee none),
// which has nothing to attest with.
//
//   - sim: a sim SNP guest of the image's sim authority, launched as the sim PSP disk says
//     (c.Reader when it is a *SimReader, else the default one): the same report source as the
//     initdata check;
//   - snp, tdx: attester.Detect, which must find the same TEE kind.
func (c Config) Attester(ctx context.Context) (attester.Attester, error) {
	switch c.TEE {
	case api.TEENone, "":
		return nil, nil
	case api.TEESim:
		r, ok := c.Reader.(*SimReader)
		if !ok || r == nil {
			r = &SimReader{Paths: c.Paths, Wait: 5 * time.Second}
		}
		a, err := r.Attester(ctx)
		if err != nil {
			return nil, err
		}
		return a, nil
	case api.TEESNP, api.TEETDX:
		a, err := attester.Detect()
		if err != nil {
			return nil, fmt.Errorf("tee %s: attester: %w", c.TEE, err)
		}
		if a.TEE() != c.TEE {
			return nil, fmt.Errorf("tee %s: the attester found a %s TEE", c.TEE, a.TEE())
		}
		return a, nil
	}
	return nil, fmt.Errorf("tee %q: no attester for this TEE kind", c.TEE)
}

// Attester returns a sim SNP attester of the image's sim authority for the launch the sim
// PSP disk reports (its HOST_DATA and measurement are those the initdata check read).
func (r *SimReader) Attester(ctx context.Context) (*sim.Attester, error) {
	auth, err := r.authority()
	if err != nil {
		return nil, err
	}
	l, err := r.launch(ctx)
	if err != nil {
		return nil, err
	}
	a, err := sim.NewSNPAttester(auth, sim.SNPLaunchFromPSP(l))
	if err != nil {
		return nil, fmt.Errorf("veil.tee=sim: %w", err)
	}
	return a, nil
}
