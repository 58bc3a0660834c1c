package unseal_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/agent/unseal"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/kbs-client/sealed"
)

const (
	kid       = "kbs:///default/sealed/key"
	dbURI     = "kbs:///default/secret/db"
	kekURI    = "kbs:///default/kek/1"
	dbSecret  = "db-password-7f3a9c"
	envSecret = "envelope-plaintext-c21e"
)

// fixture is a real KBS on loopback holding a verification key, a vault secret and a KEK,
// and an Unsealer attested to it as a sim SNP guest.
type fixture struct {
	kbs  *kbstest.KBS
	key  *ecdsa.PrivateKey
	kek  []byte
	u    *unseal.Unsealer
	logs *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	var logs bytes.Buffer
	log.L.Logger.SetOutput(&logs)
	log.L.Logger.SetLevel(logrus.DebugLevel)
	t.Cleanup(func() { log.L.Logger.SetOutput(io.Discard); log.L.Logger.SetLevel(logrus.InfoLevel) })
	f := &fixture{kbs: kbstest.NewKBS(t, true), logs: &logs}
	var err error
	if f.key, err = sealed.GenerateKey(); err != nil {
		t.Fatal(err)
	}
	pub, _ := sealed.PublicJWK(&f.key.PublicKey)
	f.kek = make([]byte, 32)
	rand.Read(f.kek)
	f.kbs.Put(t, "default/sealed/key", pub)
	f.kbs.Put(t, "default/secret/db", []byte(dbSecret))
	f.kbs.Put(t, "default/kek/1", f.kek)
	att, init := kbstest.Guest(t, kbstest.Measurement)
	hub, err := cdh.New(cdh.Config{URL: f.kbs.URL(), Attester: att, InitData: init})
	if err != nil {
		t.Fatal(err)
	}
	f.u = &unseal.Unsealer{Fetcher: hub}
	return f
}

func (f *fixture) vault(t *testing.T, uri string) string {
	t.Helper()
	s, err := sealed.NewVault(uri)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sealed.Seal(s, f.key, kid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (f *fixture) envelope(t *testing.T, plain string) string {
	t.Helper()
	s, err := sealed.NewEnvelope([]byte(plain), f.kek, kekURI, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sealed.Seal(s, f.key, kid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (f *fixture) noPlaintextLogged(t *testing.T) {
	t.Helper()
	for _, p := range []string{dbSecret, envSecret} {
		if strings.Contains(f.logs.String(), p) {
			t.Fatalf("the log holds a plaintext: %s", f.logs.String())
		}
	}
}

func envSpec(env ...string) *specs.Spec {
	return &specs.Spec{Process: &specs.Process{Env: env}}
}

func TestEnv(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	spec := envSpec("PATH=/bin", "DB="+f.vault(t, dbURI), "ENV="+f.envelope(t, envSecret), "PLAIN=sealed")
	undo, err := f.u.Container(ctx, spec, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	want := []string{"PATH=/bin", "DB=" + dbSecret, "ENV=" + envSecret, "PLAIN=sealed"}
	if strings.Join(spec.Process.Env, "\n") != strings.Join(want, "\n") {
		t.Fatalf("env %q", spec.Process.Env)
	}
	// An exec carrying the same sealed value again is unsealed from the cache: the KBS sees
	// one request for the secret, however many execs.
	n := f.kbs.Count("/kbs/v0/resource/default/secret/db")
	v := f.vault(t, dbURI)
	for i := 0; i < 3; i++ {
		env := []string{"DB=" + v}
		if err := f.u.Env(ctx, env, "process.env"); err != nil || env[0] != "DB="+dbSecret {
			t.Fatalf("exec env %q, %v", env, err)
		}
	}
	if got := f.kbs.Count("/kbs/v0/resource/default/secret/db") - n; got != 1 {
		t.Fatalf("%d resource requests for one sealed value unsealed three times, want 1", got)
	}
	f.noPlaintextLogged(t)
}

// TestEnvRefused: each way a sealed env value fails names the variable, never a plaintext,
// and leaves the spec's sealed value for nobody (the container is not created).
func TestEnvRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	other, _ := sealed.GenerateKey()
	s, _ := sealed.NewVault(dbURI)
	forged, _ := sealed.Seal(s, other, kid)
	wrongKEK := make([]byte, 32)
	rand.Read(wrongKEK)
	es, _ := sealed.NewEnvelope([]byte(envSecret), wrongKEK, kekURI, nil)
	badEnvelope, _ := sealed.Seal(es, f.key, kid)
	for _, tc := range []struct {
		name, value, want string
		u                 *unseal.Unsealer
		class             error
	}{
		{"missing resource", f.vault(t, "kbs:///default/secret/missing"), "kbs:///default/secret/missing", f.u, errdefs.ErrFailedPrecondition},
		{"signature wrong", forged, "signature does not verify", f.u, errdefs.ErrInvalidArgument},
		{"malformed", "sealed.abc", "malformed sealed secret", f.u, errdefs.ErrInvalidArgument},
		{"wrong KEK", badEnvelope, "does not unwrap", f.u, errdefs.ErrFailedPrecondition},
		{"untrusted key", f.vault(t, dbURI), "not trusted", &unseal.Unsealer{Fetcher: f.u.Fetcher, Trusted: []string{"kbs:///default/sealed/other"}}, errdefs.ErrInvalidArgument},
		{"no KBS", f.vault(t, dbURI), "no KBS", &unseal.Unsealer{}, errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := envSpec("A=1", "SECRET_VAR="+tc.value)
			_, err := tc.u.Container(ctx, spec, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), "process.env SECRET_VAR") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming SECRET_VAR and %q", err, tc.want)
			}
			if !errors.Is(err, tc.class) {
				t.Fatalf("error %v is not %v", err, tc.class)
			}
			if strings.Contains(err.Error(), dbSecret) || strings.Contains(err.Error(), envSecret) {
				t.Fatalf("error holds a plaintext: %v", err)
			}
		})
	}
	f.noPlaintextLogged(t)
}

// secretVolume writes a Kubernetes Secret volume (atomic writer layout) into dir.
func secretVolume(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	data := filepath.Join(dir, "..2026_12_07_06_00_00.000")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..data/"+name, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(data), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs: run it as root (make unit runs as root on the CI machine)")
	}
}

func TestFiles(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	ctx := context.Background()
	share, dir := t.TempDir(), t.TempDir()
	vol := filepath.Join(share, "secret-volume")
	secretVolume(t, vol, map[string]string{"db": f.vault(t, dbURI) + "\n", "env": f.envelope(t, envSecret), "plain": "not sealed"})
	single := filepath.Join(share, "token")
	os.WriteFile(single, []byte(f.vault(t, dbURI)), 0o600)
	other := filepath.Join(share, "other")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "a"), []byte("plain"), 0o644)
	spec := &specs.Spec{Process: &specs.Process{}, Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/etc/secret", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
		{Destination: "/run/token", Source: single, Options: []string{"bind"}},
		{Destination: "/data", Type: "bind", Source: other},
	}}
	undo, err := f.u.Container(ctx, spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	sealedDir := filepath.Join(dir, "sealed")
	if spec.Mounts[1].Source != sealedDir+"/1" || spec.Mounts[2].Source != sealedDir+"/2" || spec.Mounts[3].Source != other {
		t.Fatalf("sources %+v", spec.Mounts)
	}
	for p, want := range map[string]string{
		"1/db": dbSecret, "1/env": envSecret, "1/plain": "not sealed", "2": dbSecret,
	} {
		got, err := os.ReadFile(filepath.Join(sealedDir, p)) // through the copied links
		if err != nil || string(got) != want {
			t.Fatalf("%s: %q, %v", p, got, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(sealedDir, "1/db")); err != nil || l != "..data/db" {
		t.Fatalf("link %q, %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(sealedDir, "1/db")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	// The share still holds only the sealed values.
	if b, _ := os.ReadFile(filepath.Join(vol, "db")); !sealed.IsSealed(b) {
		t.Fatal("the share's file changed")
	}
	if !isMount(t, sealedDir) {
		t.Fatal("the copies are not on their own tmpfs")
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sealedDir); !os.IsNotExist(err) {
		t.Fatalf("copies left after undo: %v", err)
	}
	f.noPlaintextLogged(t)
}

// TestFileRefused: a sealed file that cannot be unsealed fails with its mount and path named,
// after an earlier mount was already copied: nothing is left.
func TestFileRefused(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	share, dir := t.TempDir(), t.TempDir()
	good := filepath.Join(share, "good")
	secretVolume(t, good, map[string]string{"db": f.vault(t, dbURI)})
	bad := filepath.Join(share, "bad")
	secretVolume(t, bad, map[string]string{"ok": "x", "missing": f.vault(t, "kbs:///default/secret/missing")})
	spec := &specs.Spec{Process: &specs.Process{}, Mounts: []specs.Mount{
		{Destination: "/good", Type: "bind", Source: good},
		{Destination: "/bad", Type: "bind", Source: bad},
	}}
	_, err := f.u.Container(context.Background(), spec, dir)
	if err == nil || !strings.Contains(err.Error(), "mounts[1] (/bad)") || !strings.Contains(err.Error(), "file ..2026_12_07_06_00_00.000/missing") ||
		!strings.Contains(err.Error(), "kbs:///default/secret/missing") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sealed")); !os.IsNotExist(err) {
		t.Fatalf("copies left after a failure: %v", err)
	}
	// Without a KBS a sealed file is refused too.
	spec.Mounts[0].Source = good
	_, err = (&unseal.Unsealer{}).Container(context.Background(), spec, dir)
	if err == nil || !strings.Contains(err.Error(), "no KBS") {
		t.Fatalf("no KBS: %v", err)
	}
}

// TestFIFO: a FIFO the host planted in a volume neither blocks the scan nor is copied into
// a sealed volume's copy.
func TestFIFO(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	share := t.TempDir()
	vol := filepath.Join(share, "v")
	secretVolume(t, vol, map[string]string{"db": f.vault(t, dbURI)})
	if err := mkfifo(filepath.Join(vol, "fifo")); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Process: &specs.Process{}, Mounts: []specs.Mount{{Destination: "/v", Type: "bind", Source: vol}}}
	_, err := f.u.Container(context.Background(), spec, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "fifo is neither a file, a directory nor a link") {
		t.Fatalf("error %v", err)
	}
}

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }

func isMount(t *testing.T, p string) bool {
	t.Helper()
	var st, parent unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Dir(p), &parent); err != nil {
		t.Fatal(err)
	}
	return st.Dev != parent.Dev
}

// TestTooLarge: a source deeper than MaxDepth is refused in a guest with a KBS (a sealed file
// could hide there) and used as it is in one without (nothing could be unsealed).
func TestTooLarge(t *testing.T) {
	f := newFixture(t)
	src := t.TempDir()
	deep := src
	for i := 0; i <= unseal.MaxDepth+1; i++ {
		deep = filepath.Join(deep, "d")
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := func() *specs.Spec {
		return &specs.Spec{Process: &specs.Process{}, Mounts: []specs.Mount{{Destination: "/big", Type: "bind", Source: src}}}
	}
	_, err := f.u.Container(context.Background(), spec(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "mounts[0] (/big)") || !strings.Contains(err.Error(), "deeper than") {
		t.Fatalf("with a KBS: %v", err)
	}
	s := spec()
	undo, err := (&unseal.Unsealer{}).Container(context.Background(), s, t.TempDir())
	if err != nil || s.Mounts[0].Source != src {
		t.Fatalf("without a KBS: %v, source %s", err, s.Mounts[0].Source)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
}

// TestSealedMountsRequired: a mount the policy obliges to hold only sealed files is refused,
// naming the file, when the host put a plain one there (a sealed file swapped for a plaintext
// of its choosing); with only sealed files it is unsealed as usual.
func TestSealedMountsRequired(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	share := t.TempDir()
	good := filepath.Join(share, "good")
	secretVolume(t, good, map[string]string{"db": f.vault(t, dbURI)})
	swapped := filepath.Join(share, "swapped")
	secretVolume(t, swapped, map[string]string{"db": "host-chosen-plaintext"})
	ctx := unseal.WithSealedMounts(context.Background(), []string{"/etc/secret"})
	spec := func(src string) *specs.Spec {
		return &specs.Spec{Process: &specs.Process{}, Mounts: []specs.Mount{
			{Destination: "/etc/secret", Type: "bind", Source: src},
			{Destination: "/other", Type: "bind", Source: swapped}, // not obliged: used as is
		}}
	}
	s := spec(good)
	undo, err := f.u.Container(ctx, s, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(s.Mounts[0].Source, "db")); err != nil || string(b) != dbSecret || s.Mounts[1].Source != swapped {
		t.Fatalf("obliged mount: %q, %v; other %s", b, err, s.Mounts[1].Source)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = f.u.Container(ctx, spec(swapped), dir)
	if err == nil || !errors.Is(err, errdefs.ErrPermissionDenied) || !strings.Contains(err.Error(), "mounts[0] (/etc/secret): file ..2026_12_07_06_00_00.000/db is not a sealed secret") ||
		strings.Contains(err.Error(), "host-chosen-plaintext") {
		t.Fatalf("swapped: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sealed")); !os.IsNotExist(err) {
		t.Fatalf("copies left: %v", err)
	}
}
