package guestimage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/veil-runtime/veil/attestation/sim"
)

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
