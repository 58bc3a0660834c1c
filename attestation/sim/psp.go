package sim

import "github.com/veil-runtime/veil/attestation/sim/psp"

// The sim PSP channel (the launch record the host hands a sim guest on a small disk, the
// launch measurement, the kernel parameter that selects the simulated TEE) is package
// attestation/sim/psp, which holds no keys so that the host links it without this package.

// GuestAuthorityPath is where a guest image carries the sim authority (veil-image build
// --sim-authority). An image without it cannot run as a sim guest.
const GuestAuthorityPath = "/etc/veil/sim-authority.pem"

// SNPLaunchFromPSP returns the SNP launch the sim attester signs reports for, from what the sim
// PSP reports about the launch: HOST_DATA is the host data's first 32 bytes, zero-padded.
func SNPLaunchFromPSP(l psp.Launch) SNPLaunch {
	s := SNPLaunch{Measurement: l.Measurement, Policy: l.Policy}
	copy(s.HostData[:], l.HostData)
	return s
}
