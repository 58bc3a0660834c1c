package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/kbs-client/sealed"
)

// storeFetcher reads the KBS's store directly (the unsealing side is tested with attestation
// in agent/unseal).
type storeFetcher struct{ env *kbstest.Env }

func (f storeFetcher) GetResource(ctx context.Context, uri string) ([]byte, error) {
	p, err := protocol.ParseResourceURI(uri)
	if err != nil {
		return nil, err
	}
	return f.env.Store.Get(ctx, p)
}

// TestSeal: seal-keygen stores the public key through the administrator API, seal vault and
// seal envelope --new-kek make values that unseal with the KBS's resources.
func TestSeal(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(env.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	adminKey := writeFile(t, dir, "admin.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	admin := []string{"--url", env.URL(), "--admin-key", adminKey}
	key := filepath.Join(dir, "seal.pem")
	const kid = "kbs:///default/sealed/key"

	code, out, errOut := runCLI(t, append(admin, "seal-keygen", "--kid", kid, key)...)
	if code != 0 || !strings.Contains(out, `"crv":"P-256"`) {
		t.Fatalf("seal-keygen: %d %q %s", code, out, errOut)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if code, _, errOut := runCLI(t, "seal-keygen", key); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("seal-keygen over a key: %d %s", code, errOut)
	}
	f := storeFetcher{env}
	ctx := context.Background()

	if err := env.Store.Put(ctx, protocol.ResourcePath{Repository: "default", Type: "secret", Tag: "db"}, []byte("db-pass")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "seal", "vault", "--key", key, "--kid", kid, "kbs:///default/secret/db")
	if code != 0 {
		t.Fatalf("seal vault: %d %s", code, errOut)
	}
	if got, err := sealed.Open(ctx, strings.TrimSpace(out), f, []string{kid}); err != nil || string(got) != "db-pass" {
		t.Fatalf("vault unseals to %q, %v", got, err)
	}

	in := writeFile(t, dir, "plain", []byte("envelope-pass"))
	code, out, errOut = runCLI(t, append(admin, "seal", "envelope", "--key", key, "--kid", kid, "--kek-id", "kbs:///default/kek/new", "--new-kek", in)...)
	if code != 0 || strings.Contains(out, "envelope-pass") {
		t.Fatalf("seal envelope --new-kek: %d %q %s", code, out, errOut)
	}
	if got, err := sealed.Open(ctx, strings.TrimSpace(out), f, nil); err != nil || string(got) != "envelope-pass" {
		t.Fatalf("envelope unseals to %q, %v", got, err)
	}
	// A second --new-kek at the same URI is refused: the KBS keeps the KEK the first value needs.
	code, _, errOut = runCLI(t, append(admin, "seal", "envelope", "--key", key, "--kid", kid, "--kek-id", "kbs:///default/kek/new", "--new-kek", in)...)
	if code == 0 || !strings.Contains(errOut, "already holds") {
		t.Fatalf("a second --new-kek at the same URI: %d %s", code, errOut)
	}
	if got, err := sealed.Open(ctx, strings.TrimSpace(out), f, nil); err != nil || string(got) != "envelope-pass" {
		t.Fatalf("after the refused --new-kek the first value unseals to %q, %v", got, err)
	}
	// With a KEK file, from stdin.
	kek, _ := f.GetResource(ctx, "kbs:///default/kek/new")
	kekFile := writeFile(t, dir, "kek", kek)
	stdin = strings.NewReader("from-stdin")
	t.Cleanup(func() { stdin = os.Stdin })
	code, out, errOut = runCLI(t, "seal", "envelope", "--key", key, "--kid", kid, "--kek-id", "kbs:///default/kek/new", "--kek", kekFile)
	if code != 0 {
		t.Fatalf("seal envelope --kek: %d %s", code, errOut)
	}
	if got, err := sealed.Open(ctx, strings.TrimSpace(out), f, nil); err != nil || string(got) != "from-stdin" {
		t.Fatalf("envelope from stdin unseals to %q, %v", got, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"seal"}, "seal takes a type"},
		{[]string{"seal", "vault", "kbs:///a/b/c"}, "needs --key and --kid"},
		{[]string{"seal", "vault", "--key", key, "--kid", "k", "kbs:///a/b/c"}, "kid"},
		{[]string{"seal", "vault", "--key", kekFile, "--kid", kid, "kbs:///a/b/c"}, "--key"},
		{[]string{"seal", "vault", "--key", key, "--kid", kid, "kbs://host/a/b/c"}, "name"},
		{[]string{"seal", "envelope", "--key", key, "--kid", kid, "--kek-id", "kbs:///a/b/c"}, "exactly one of --kek"},
		{[]string{"seal", "envelope", "--key", key, "--kid", kid, "--kek-id", "kbs:///a/b/c", "--new-kek", in}, "needs --url and --admin-key"},
		{[]string{"seal", "envelope", "--key", key, "--kid", kid, "--kek-id", "kbs:///a/b/c", "--kek", in, in}, "KEK is 13 bytes"},
	} {
		if code, _, errOut := runCLI(t, tc.args...); code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %q", tc.args, code, errOut, tc.want)
		}
	}
}
