package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/attestation/sim"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

// simGuestFiles writes a new sim authority's files and reference values that allow the
// measurement [48]byte{7} into a temporary directory, and returns it with the guest of that
// measurement and its (empty) initdata body.
func simGuestFiles(t *testing.T) (dir, refs, body string, guest *sim.Attester) {
	t.Helper()
	dir, refs, body, guest, _ = simGuest(t)
	return dir, refs, body, guest
}

// simGuest is simGuestFiles that also returns the authority (with its ARK key, for CRLs).
func simGuest(t *testing.T) (dir, refs, body string, guest *sim.Attester, auth *sim.Authority) {
	t.Helper()
	dir = t.TempDir()
	var err error
	auth, err = sim.NewAuthority(rand.Reader, sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	refs = filepath.Join(dir, "refs.json")
	meas := [48]byte{7}
	if err := os.WriteFile(refs, []byte(fmt.Sprintf(`{"snp":{"allow_simulated":true,"measurements":["%x"]}}`, meas)), 0o600); err != nil {
		t.Fatal(err)
	}
	body = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n"
	guest, err = sim.NewSNPAttester(auth, sim.SNPLaunch{Measurement: meas, HostData: sha256.Sum256([]byte(body))})
	if err != nil {
		t.Fatal(err)
	}
	return dir, refs, body, guest, auth
}

// veil-kbs as configured from files: sim roots, reference values, a resource stored on disk.
// A sim guest gets the resource; without the sim roots the same guest is refused.
func TestSimFlowFromFiles(t *testing.T) {
	dir, refs, body, guest := simGuestFiles(t)
	for _, trust := range []bool{true, false} {
		t.Run(fmt.Sprintf("trust sim %v", trust), func(t *testing.T) {
			cfg := &Config{Data: filepath.Join(t.TempDir(), "data"), Attestation: AttestationConfig{ReferenceValues: refs}}
			if trust {
				cfg.Attestation.SimSNPRoots = filepath.Join(dir, sim.SNPRootsFile)
			}
			url := serve(t, cfg)
			p, _ := protocol.ParseResourcePath("default/key/1")
			if err := os.MkdirAll(filepath.Join(cfg.Data, "resources", "default", "key"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cfg.Data, "resources", p.Repository, p.Type, p.Tag), []byte("from disk"), 0o600); err != nil {
				t.Fatal(err)
			}
			cl, err := kbsclient.New(url, guest, kbsclient.Options{InitData: &protocol.InitData{Format: "toml", Body: body}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := cl.GetResource(t.Context(), p.URI())
			if trust && (err != nil || string(got) != "from disk") {
				t.Fatalf("GetResource = %q, %v", got, err)
			}
			if !trust && (err == nil || !strings.Contains(err.Error(), "no sim root is configured")) {
				t.Fatalf("GetResource without sim roots = %q, %v", got, err)
			}
		})
	}
}

// serve runs the daemon on a loopback port until the test ends.
func serve(t *testing.T, cfg *Config) string {
	t.Helper()
	d, err := Prepare(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("the daemon did not stop")
		}
	})
	return "http://" + ln.Addr().String()
}

// Two veil-kbs replicas behind one address share nothing but the session key file: a guest
// whose auth goes to one and whose attest and resource go to the other gets its secret. With
// a key each, the second replica refuses the first one's cookie.
func TestReplicasShareSessionKey(t *testing.T) {
	dir, refs, body, guest := simGuestFiles(t)
	key := filepath.Join(dir, "session.key")
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	replica := func(keyFile string) string {
		cfg := &Config{Data: filepath.Join(t.TempDir(), "data"), SessionKeyFile: keyFile, Attestation: AttestationConfig{
			ReferenceValues: refs, SimSNPRoots: filepath.Join(dir, sim.SNPRootsFile)}}
		url := serve(t, cfg)
		res := filepath.Join(cfg.Data, "resources", "default", "key")
		if err := os.MkdirAll(res, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(res, "1"), []byte("from disk"), 0o600); err != nil {
			t.Fatal(err)
		}
		return url
	}
	// split sends auth to a and everything else to b.
	split := func(a, b string) string {
		ua, _ := neturl.Parse(a)
		ub, _ := neturl.Parse(b)
		pa, pb := httputil.NewSingleHostReverseProxy(ua), httputil.NewSingleHostReverseProxy(ub)
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == protocol.PathPrefix+"/auth" {
				pa.ServeHTTP(w, r)
				return
			}
			pb.ServeHTTP(w, r)
		}))
		t.Cleanup(hs.Close)
		return hs.URL
	}
	get := func(url string) ([]byte, error) {
		cl, err := kbsclient.New(url, guest, kbsclient.Options{
			InitData: &protocol.InitData{Format: "toml", Body: body}, Retry: kbsclient.Retry{Attempts: 1}})
		if err != nil {
			t.Fatal(err)
		}
		return cl.GetResource(t.Context(), "kbs:///default/key/1")
	}
	a, b := replica(key), replica(key)
	if got, err := get(split(a, b)); err != nil || string(got) != "from disk" {
		t.Fatalf("auth on one replica, attest on the other: %q, %v", got, err)
	}
	c := replica("")
	if _, err := get(split(a, c)); err == nil || !strings.Contains(err.Error(), "no longer accepts") {
		t.Fatalf("a replica with its own key: %v", err)
	}
}
