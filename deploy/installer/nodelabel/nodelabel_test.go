package nodelabel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type request struct {
	method, path, auth, ctype string
	body                      map[string]any
}

// apiServer is a fake API server over TLS; sa is a service account directory with its
// token and CA.
func apiServer(t *testing.T, status int) (srv *httptest.Server, sa string, got *[]request) {
	var mu sync.Mutex
	reqs := &[]request{}
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		json.Unmarshal(b, &body)
		mu.Lock()
		*reqs = append(*reqs, request{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
		mu.Unlock()
		w.WriteHeader(status)
		if status != http.StatusOK {
			io.WriteString(w, `{"kind":"Status","message":"nodes \"n1\" is forbidden: User cannot patch"}`)
			return
		}
		io.WriteString(w, `{"kind":"Node"}`)
	}))
	t.Cleanup(srv.Close)
	sa = t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	os.WriteFile(filepath.Join(sa, "ca.crt"), ca, 0o644)
	os.WriteFile(filepath.Join(sa, "token"), []byte("fake-token\n"), 0o600)
	return srv, sa, reqs
}

func inCluster(t *testing.T, srv *httptest.Server, sa, node string) *Client {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	t.Setenv("KUBERNETES_SERVICE_HOST", u.Hostname())
	t.Setenv("KUBERNETES_SERVICE_PORT", u.Port())
	c, err := InCluster(node, sa)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSetAndRemove(t *testing.T) {
	srv, sa, reqs := apiServer(t, http.StatusOK)
	c := inCluster(t, srv, sa, "node-1")
	if err := c.Set(context.Background(), map[string]string{"veil.dev/kvm": "true", "veil.dev/tee.snp": "false"}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(sa, "token"), []byte("rotated"), 0o600)
	if err := c.Remove(context.Background(), []string{"veil.dev/kvm"}); err != nil {
		t.Fatal(err)
	}
	if len(*reqs) != 2 {
		t.Fatalf("%d requests", len(*reqs))
	}
	set, rm := (*reqs)[0], (*reqs)[1]
	if set.method != http.MethodPatch || set.path != "/api/v1/nodes/node-1" || set.auth != "Bearer fake-token" ||
		set.ctype != "application/merge-patch+json" {
		t.Errorf("set request: %+v", set)
	}
	if len(set.body) != 1 {
		t.Errorf("the patch touches more than metadata: %v", set.body)
	}
	meta, _ := set.body["metadata"].(map[string]any)
	labels, _ := meta["labels"].(map[string]any)
	if len(meta) != 1 || len(labels) != 2 || labels["veil.dev/kvm"] != "true" {
		t.Errorf("set patch: %v", set.body)
	}
	meta, _ = rm.body["metadata"].(map[string]any)
	labels, _ = meta["labels"].(map[string]any)
	if v, ok := labels["veil.dev/kvm"]; !ok || v != nil || rm.auth != "Bearer rotated" {
		t.Errorf("remove patch: %v (auth %q), want veil.dev/kvm: null with the rotated token", rm.body, rm.auth)
	}
}

func TestGuards(t *testing.T) {
	srv, sa, reqs := apiServer(t, http.StatusOK)
	c := inCluster(t, srv, sa, "node-1")
	for _, labels := range []map[string]string{
		{"kubernetes.io/hostname": "x"},
		{"veil.dev/ok": "true", "node-role.kubernetes.io/control-plane": ""},
		{"veil.dev/": "x"},
		{"xveil.dev/a": "x"},
	} {
		if err := c.Set(context.Background(), labels); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("Set(%v): err %v, want a refusal", labels, err)
		}
	}
	if err := c.Remove(context.Background(), []string{"topology.kubernetes.io/zone"}); err == nil {
		t.Error("Remove of a foreign label accepted")
	}
	if len(*reqs) != 0 {
		t.Errorf("refused patches reached the server: %v", *reqs)
	}
	for _, node := range []string{"", "a/b", "../nodes"} {
		if _, err := New(srv.URL, filepath.Join(sa, "token"), filepath.Join(sa, "ca.crt"), node); err == nil {
			t.Errorf("node name %q accepted", node)
		}
	}
}

func TestErrors(t *testing.T) {
	srv, sa, _ := apiServer(t, http.StatusForbidden)
	c := inCluster(t, srv, sa, "n1")
	err := c.Set(context.Background(), map[string]string{"veil.dev/kvm": "true"})
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "cannot patch") {
		t.Errorf("err = %v, want the status and the API's message", err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := InCluster("n1", sa); err == nil || !strings.Contains(err.Error(), "not in a Kubernetes pod") {
		t.Errorf("outside a pod: %v", err)
	}
	// A CA that does not vouch for the server's certificate.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	otherCA := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(otherCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	c2, err := New(srv.URL, filepath.Join(sa, "token"), otherCA, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Set(context.Background(), map[string]string{"veil.dev/kvm": "true"}); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted server: %v", err)
	}
}
