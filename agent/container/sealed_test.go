package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/unseal"
	"github.com/veil-runtime/veil/kbs-client/sealed"
)

// mapFetcher serves KBS resources from a map (agent/unseal tests the real KBS).
type mapFetcher map[string][]byte

func (f mapFetcher) GetResource(_ context.Context, uri string) ([]byte, error) {
	if d, ok := f[uri]; ok {
		return append([]byte(nil), d...), nil
	}
	return nil, fmt.Errorf("resource %s not found", uri)
}

// TestSealedSecrets: the container's process sees the plaintext of a sealed variable and of a
// sealed file of its bind mount; Remove unmounts the tmpfs of the copies, and so does a
// failed Create.
func TestSealedSecrets(t *testing.T) {
	requireRoot(t)
	key, _ := sealed.GenerateKey()
	pub, _ := sealed.PublicJWK(&key.PublicKey)
	const kid = "kbs:///default/sealed/key"
	f := mapFetcher{kid: pub, "kbs:///default/secret/a": []byte("plain-a"), "kbs:///default/secret/b": []byte("plain-b")}
	value := func(uri string) string {
		s, _ := sealed.NewVault(uri)
		v, err := sealed.Seal(s, key, kid)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	m := newTestManager(t)
	m.SetUnsealer(&unseal.Unsealer{Fetcher: f, Trusted: []string{kid}})
	rootfs := newRootfs(t)
	mnt := filepath.Join(api.StorageDir, filepath.Base(filepath.Dir(rootfs)), "data")
	storages := []*api.Storage{{Driver: api.DriverTmpfs, MountPoint: mnt, Options: []string{"size=1m"}}}
	ctx := testCtx(t)

	s := testSpec(rootfs, "sh", "-c", "cat /data/token; echo; echo $SECRET")
	s.Process.Env = append(s.Process.Env, "SECRET="+value("kbs:///default/secret/a"))
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: mnt, Options: []string{"rbind", "ro"}})
	// The sealed file lies on the share, as a Secret volume the host shared would.
	share := filepath.Join(api.SharedDir, filepath.Base(filepath.Dir(rootfs))+"-token")
	if err := os.MkdirAll(share, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(share) })
	if err := os.WriteFile(filepath.Join(share, "token"), []byte(value("kbs:///default/secret/b")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Mounts[len(s.Mounts)-1].Source = share
	id := testID(t)
	if err := m.Create(ctx, id, specJSON(t, s), false, storages); err != nil {
		t.Fatalf("Create: %v", err)
	}
	sealedDir := filepath.Join(api.ContainersDir, id, "sealed")
	if !mounted(t, sealedDir) {
		t.Fatalf("%s is not mounted", sealedDir)
	}
	if err := m.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if out := string(readAll(t, m, id, "", false)); out != "plain-b\nplain-a\n" {
		t.Fatalf("output %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(share, "token")); !strings.HasPrefix(string(b), sealed.Prefix) {
		t.Fatal("the share's file changed")
	}
	if err := m.Remove(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if mounted(t, sealedDir) {
		t.Fatalf("%s is still mounted after Remove", sealedDir)
	}
	if _, err := os.Stat(filepath.Join(api.ContainersDir, id)); !os.IsNotExist(err) {
		t.Fatalf("the container's directory is left: %v", err)
	}

	// A sealed variable that cannot be unsealed, after the file was copied: nothing is left.
	s.Process.Env = append(s.Process.Env, "OTHER="+value("kbs:///default/secret/missing"))
	id = testID(t)
	err := m.Create(ctx, id, specJSON(t, s), false, storages)
	if err == nil || !strings.Contains(err.Error(), "process.env OTHER") {
		t.Fatalf("Create with a missing resource: %v", err)
	}
	if mounted(t, filepath.Join(api.ContainersDir, id, "sealed")) || mounted(t, mnt) {
		t.Fatal("mounts left after a failed Create")
	}
	assertGone(t, m, id)
}
