package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/admin"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
)

func TestMain(m *testing.M) {
	log.L.Logger.SetOutput(io.Discard)
	os.Exit(m.Run())
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAdminCommands(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(env.AdminKey)
	if err != nil {
		t.Fatal(err)
	}
	key := writeFile(t, dir, "admin.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	secret := writeFile(t, dir, "secret", []byte("s3cret"))
	policy := writeFile(t, dir, "policy.rego", []byte("package policy\nallow := false\n"))
	base := []string{"--url", env.URL(), "--admin-key", key}

	if code, _, errOut := runCLI(t, append(base, "set-resource", "kbs:///default/key/1", secret)...); code != 0 {
		t.Fatalf("set-resource: %d %s", code, errOut)
	}
	got, err := env.Store.Get(t.Context(), protocol.ResourcePath{Repository: "default", Type: "key", Tag: "1"})
	if err != nil || string(got) != "s3cret" {
		t.Fatalf("stored %q, %v", got, err)
	}
	if code, _, errOut := runCLI(t, append(base, "set-resource-policy", policy)...); code != 0 {
		t.Fatalf("set-resource-policy: %d %s", code, errOut)
	}
	if code, out, errOut := runCLI(t, append(base, "get-resource-policy")...); code != 0 || out != "package policy\nallow := false\n" {
		t.Fatalf("get-resource-policy: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, append(base, "set-attestation-policy", "--id", "snp", policy)...); code != 0 {
		t.Fatalf("set-attestation-policy: %d %s", code, errOut)
	}
	if string(env.Attestation.Policy("snp")) != "package policy\nallow := false\n" {
		t.Fatal("attestation policy not set")
	}

	// bind-repository takes hex digests and initdata files (their digest as the launch
	// computes it: sha256 of the document for algorithm sha256).
	doc := "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"package p\"\n"
	initFile := writeFile(t, dir, "initdata.toml", []byte(doc))
	sum := sha256.Sum256([]byte(doc))
	hexDigest := strings.Repeat("ab", 48)
	if code, _, errOut := runCLI(t, append(base, "bind-repository", "tenant", hexDigest, initFile)...); code != 0 {
		t.Fatalf("bind-repository: %d %s", code, errOut)
	}
	want := []string{hex.EncodeToString(sum[:]), hexDigest}
	slices.Sort(want)
	if got := env.Policy.Binding("tenant"); !slices.Equal(got, want) {
		t.Fatalf("binding %v, want %v", got, want)
	}
	if code, out, errOut := runCLI(t, append(base, "get-repository-binding", "tenant")...); code != 0 || out != strings.Join(want, "\n")+"\n" {
		t.Fatalf("get-repository-binding: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, append(base, "bind-repository", "tenant", filepath.Join(dir, "missing.toml"))...); code == 0 || !strings.Contains(errOut, "neither a hex digest nor a readable initdata file") {
		t.Fatalf("bind-repository with a missing file: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, append(base, "bind-repository", "tenant")...); code != 0 || env.Policy.Binding("tenant") != nil {
		t.Fatalf("unbind: %d %s", code, errOut)
	}
}

func TestErrors(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	dir := t.TempDir()
	other := filepath.Join(dir, "other.pem")
	if err := func() error {
		_, err := adminKeyPair(dir)
		return err
	}(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"no url", []string{"attest"}, 2, "usage"},
		{"unknown command", []string{"--url", env.URL(), "frobnicate"}, 1, "unknown command"},
		{"no tee", []string{"--url", env.URL(), "attest"}, 1, "--tee is required"},
		{"bad tee", []string{"--url", env.URL(), "--tee", "sgx", "attest"}, 1, "want snp, tdx or sim"},
		{"sim without authority", []string{"--url", env.URL(), "--tee", "sim", "attest"}, 1, "--sim-authority"},
		{"admin without key", []string{"--url", env.URL(), "get-resource-policy"}, 1, "--admin-key"},
		{"wrong admin key", []string{"--url", env.URL(), "--admin-key", other, "get-resource-policy"}, 3, "AdminAuthAccess"},
		{"bad URI", []string{"--url", env.URL(), "--admin-key", other, "set-resource", "kbs:///a/../b", other}, 1, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, tt.code, tt.wantErr)
			}
		})
	}
}

func adminKeyPair(dir string) (string, error) {
	priv := filepath.Join(dir, "other.pem")
	_, err := admin.GenerateKeyPair(priv, filepath.Join(dir, "other.pub"))
	return priv, err
}
