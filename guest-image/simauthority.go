package guestimage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/veil-runtime/veil/attestation/sim"
)

// SimAuthority describes the sim authority an image carries (veil-image build
// --sim-authority): the simulated TEE's signing keys, at sim.GuestAuthorityPath in the
// initrd (mode 0600). Only an image with one can boot as a sim guest (kernel parameter
// veil.tee=sim). The keys never leave the image; the manifest records the digests of the
// roots a KBS is given to trust them, so that an operator can match image and KBS.
type SimAuthority struct {
	// Path is the authority's path in the guest.
	Path string `json:"path"`
	// SNPRootsSHA256 is the hex SHA-256 of the sim SNP roots (sim-snp-roots.pem: ASK, ARK).
	SNPRootsSHA256 string `json:"snpRootsSHA256"`
	// TDXRootSHA256 is the hex SHA-256 of the sim TDX root (sim-tdx-root.pem).
	TDXRootSHA256 string `json:"tdxRootSHA256"`
}

// readSimAuthority reads and checks the authority file at path ("" means none).
func readSimAuthority(path string) ([]byte, *SimAuthority, error) {
	if path == "" {
		return nil, nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("sim authority: %w", err)
	}
	a, err := sim.ParseAuthority(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	s, t := sha256.Sum256(a.SNPRootsPEM()), sha256.Sum256(a.TDXRootPEM())
	return data, &SimAuthority{Path: sim.GuestAuthorityPath,
		SNPRootsSHA256: hex.EncodeToString(s[:]), TDXRootSHA256: hex.EncodeToString(t[:])}, nil
}
