// Package keyprovidertest encrypts test images the way a Veil user does (docs/keyprovider.md):
// skopeo copy --encryption-key provider:veil:<kid>, with veil-keyprovider as the ocicrypt key
// provider's command. skopeo is the 1.9.3 that `make skopeo` builds from Debian's source
// (Debian's own binary predates ocicrypt's key-provider protocol); VEIL_SKOPEO overrides it.
package keyprovidertest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Version is the skopeo scripts/skopeo.sh builds.
const Version = "1.9.3+ds1"

// Binary is the skopeo to run, or an error that says how to get it.
func Binary() (string, error) {
	bin := os.Getenv("VEIL_SKOPEO")
	if bin == "" {
		cache := os.Getenv("VEIL_CACHE")
		if cache == "" {
			cache = "/var/cache/veil"
		}
		bin = filepath.Join(cache, "skopeo", Version, "skopeo")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("no skopeo with ocicrypt's key-provider protocol at %s: run make skopeo (or set VEIL_SKOPEO)", bin)
	}
	return bin, nil
}

// Encrypter runs skopeo with veil-keyprovider.
type Encrypter struct {
	Skopeo      string   // skopeo binary
	KeyProvider string   // veil-keyprovider binary
	Args        []string // veil-keyprovider's arguments (--kek-dir, --kbs, --admin-key)
}

// Encrypt copies src to dst (docker://… or oci:… references) with every layer encrypted for
// kid; plain HTTP to the registries.
func (e Encrypter) Encrypt(t testing.TB, src, dst, kid string) {
	t.Helper()
	conf := map[string]any{"key-providers": map[string]any{"veil": map[string]any{
		"cmd": map[string]any{"path": e.KeyProvider, "args": e.Args}}}}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ocicrypt.conf")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.Skopeo, "copy", "--insecure-policy", "--src-tls-verify=false", "--dest-tls-verify=false",
		"--encryption-key", "provider:veil:"+kid, src, dst)
	cmd.Env = append(os.Environ(), "OCICRYPT_KEYPROVIDER_CONFIG="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy --encryption-key provider:veil:%s %s %s: %v\n%s", kid, src, dst, err, out)
	}
}
