package guestimage

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/sim"
)

func TestReadSimAuthority(t *testing.T) {
	if data, ref, err := readSimAuthority(""); data != nil || ref != nil || err != nil {
		t.Fatalf("no authority: %v %v %v", data, ref, err)
	}
	dir := t.TempDir()
	a, err := sim.NewAuthority(rand.Reader, sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	data, ref, err := readSimAuthority(filepath.Join(dir, sim.AuthorityFile))
	if err != nil || len(data) == 0 {
		t.Fatal(err)
	}
	roots, _ := os.ReadFile(filepath.Join(dir, sim.SNPRootsFile))
	sum := sha256.Sum256(roots)
	if ref.Path != sim.GuestAuthorityPath || ref.SNPRootsSHA256 != hex.EncodeToString(sum[:]) || len(ref.TDXRootSHA256) != 64 {
		t.Fatalf("manifest entry %+v; want the digest of %s", ref, sim.SNPRootsFile)
	}
	// The roots file is not an authority: refused at build time, not at boot.
	if _, _, err := readSimAuthority(filepath.Join(dir, sim.SNPRootsFile)); err == nil || !strings.Contains(err.Error(), "sim authority") {
		t.Fatalf("a roots file taken as an authority: %v", err)
	}
}
