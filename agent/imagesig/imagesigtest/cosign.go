// Package imagesigtest runs the real cosign CLI for tests: it makes key pairs and signs
// images in a registry on loopback. The binary is the one `make cosign` builds into
// /var/cache/veil/cosign/<CosignVersion>/cosign (or $VEIL_COSIGN); a test that cannot find
// it fails and says how to build it.
package imagesigtest

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CosignVersion is the cosign the Makefile builds (COSIGN_VERSION there).
const CosignVersion = "v2.6.5"

// password protects the test keys (cosign always encrypts its private keys).
const password = "veil-test"

// Cosign returns the path of the cosign binary, failing tb when there is none.
func Cosign(tb testing.TB) string {
	tb.Helper()
	p := os.Getenv("VEIL_COSIGN")
	if p == "" {
		cache := os.Getenv("VEIL_CACHE")
		if cache == "" {
			cache = "/var/cache/veil"
		}
		p = filepath.Join(cache, "cosign", CosignVersion, "cosign")
	}
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("cosign CLI not found at %s: run `make cosign` (builds %s from the Go module proxy) or set VEIL_COSIGN", p, CosignVersion)
	}
	return p
}

// KeyPair is a cosign key pair made by the test.
type KeyPair struct {
	Key string // path of the encrypted private key (cosign.key)
	Pub []byte // the public key, PEM
}

// KeyData returns the public key as a policy's keyData: base64 of the PEM.
func (k KeyPair) KeyData() string { return base64.StdEncoding.EncodeToString(k.Pub) }

// GenerateKeyPair runs `cosign generate-key-pair` in a new directory.
func GenerateKeyPair(tb testing.TB) KeyPair {
	tb.Helper()
	dir := tb.TempDir()
	run(tb, dir, "generate-key-pair", "--output-key-prefix", filepath.Join(dir, "cosign"))
	pub, err := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	if err != nil {
		tb.Fatal(err)
	}
	return KeyPair{Key: filepath.Join(dir, "cosign.key"), Pub: pub}
}

// Sign runs `cosign sign` of ref (name@sha256:... or a tag) with k, offline: no
// transparency log upload, plain HTTP allowed to the registry (a loopback test registry).
func Sign(tb testing.TB, k KeyPair, ref string) {
	tb.Helper()
	run(tb, tb.TempDir(), "sign", "--key", k.Key, "--tlog-upload=false", "-y",
		"--allow-insecure-registry", "--allow-http-registry", ref)
}

func run(tb testing.TB, dir string, args ...string) {
	tb.Helper()
	cmd := exec.Command(Cosign(tb), args...)
	cmd.Dir = dir
	// A private HOME and TUF root: cosign writes its caches there, never in the user's.
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+password, "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, ".sigstore"),
		"COSIGN_EXPERIMENTAL=0", "SIGSTORE_NO_CACHE=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("cosign %v: %v\n%s", args, err, out)
	}
}
