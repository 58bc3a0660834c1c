package api

// The TEE kinds: GetGuestDetailsResponse.tee reports the one the guest found, and the host
// launches a VM of one of them (hypervisor.TEE). TEESNP and TEETDX are also the KBS protocol's
// tee names of the evidence (attestation/evidence), which a sim guest produces too.
const (
	// TEENone is a plain VM: isolation only, no attestation.
	TEENone = "none"
	// TEESNP is AMD SEV-SNP.
	TEESNP = "snp"
	// TEETDX is Intel TDX.
	TEETDX = "tdx"
	// TEESim is the simulated TEE (kernel parameter veil.tee=sim, attestation/sim/psp).
	TEESim = "sim"
)
