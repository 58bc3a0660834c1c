package keyprovider_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containers/ocicrypt/config"
	kpconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	ockp "github.com/containers/ocicrypt/keywrap/keyprovider"
	"google.golang.org/grpc"

	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/kbs-client/adminclient"
	"github.com/veil-runtime/veil/kbs-client/keyprovider"
	"github.com/veil-runtime/veil/kbs-client/keywrap"
)

const kid = "kbs:///default/image-kek/app"

var layerOpts = []byte(`{"symkey":"c3ltbWV0cmljLWtleS1vZi0zMi1ieXRlcy0wMTIzNDU2Nzg=","cipheroptions":{"nonce":"bm9uY2UtMTYtYnl0ZXMh"},"digest":"sha256:00"}`)

// serve runs p as ocicrypt's gRPC service on a unix socket and returns ocicrypt's own key
// wrapper for it: the client code skopeo runs.
func serve(t *testing.T, p *keyprovider.Provider) interface {
	WrapKeys(*config.EncryptConfig, []byte) ([]byte, error)
	UnwrapKey(*config.DecryptConfig, []byte) ([]byte, error)
} {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "kp.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	keyprovider.RegisterGRPC(s, p)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return ockp.NewKeyWrapper("veil", kpconfig.KeyProviderAttrs{Grpc: "unix://" + sock})
}

func encryptConfig(params ...string) *config.EncryptConfig {
	var ps [][]byte
	for _, p := range params {
		ps = append(ps, []byte(p))
	}
	return &config.EncryptConfig{Parameters: map[string][][]byte{"veil": ps}}
}

func newProvider(t *testing.T, dir string, kbs keyprovider.KBS) *keyprovider.Provider {
	t.Helper()
	p, err := keyprovider.New(keyprovider.Config{KEKDir: dir, KBS: kbs, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWrapWithKBS: the first wrap makes a KEK, creates it in a real KBS and keeps it; every
// later wrap (four at once included) uses the same KEK; the annotation opens with the KBS's
// copy; a second machine with its own KEK directory is refused rather than replacing the
// KBS's key; ocicrypt's client unwraps through the provider.
func TestWrapWithKBS(t *testing.T) {
	env := kbstest.NewServer(t, nil)
	kbs := adminclient.New(env.URL(), env.AdminKey, nil)
	dir := t.TempDir()
	kw := serve(t, newProvider(t, dir, kbs))

	var wg sync.WaitGroup
	anns := make([][]byte, 4)
	errs := make([]error, 4)
	for i := range anns {
		wg.Add(1)
		go func() { defer wg.Done(); anns[i], errs[i] = kw.WrapKeys(encryptConfig(kid), layerOpts) }()
	}
	wg.Wait()
	kek, err := env.Store.Get(context.Background(), protocol.ResourcePath{Repository: "default", Type: "image-kek", Tag: "app"})
	if err != nil {
		t.Fatalf("the KBS has no KEK: %v", err)
	}
	for i, ann := range anns {
		if errs[i] != nil {
			t.Fatalf("wrap %d: %v", i, errs[i])
		}
		pkt, err := keywrap.Parse(ann)
		if err != nil {
			t.Fatalf("wrap %d: %v", i, err)
		}
		if pkt.Kid != kid || *pkt.WrapType != keywrap.WrapA256GCM {
			t.Fatalf("wrap %d: %s", i, ann)
		}
		if got, err := pkt.Open(kek); err != nil || !bytes.Equal(got, layerOpts) {
			t.Fatalf("wrap %d does not open with the KBS's KEK: %v", i, err)
		}
	}
	kept, err := os.ReadFile(filepath.Join(dir, "default", "image-kek", "app"))
	if err != nil || !bytes.Equal(kept, kek) {
		t.Fatalf("kept KEK: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "default", "image-kek", "app")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept KEK mode %v", fi.Mode().Perm())
	}
	// ocicrypt's decryption through the provider (skopeo copy --decryption-key provider:veil:…).
	got, err := kw.UnwrapKey(&config.DecryptConfig{Parameters: map[string][][]byte{"veil": {[]byte(kid)}}}, anns[0])
	if err != nil || !bytes.Equal(got, layerOpts) {
		t.Fatalf("unwrap: %q, %v", got, err)
	}

	// Another machine (no kept KEK) must not replace the KBS's key.
	other := serve(t, newProvider(t, t.TempDir(), kbs))
	_, err = other.WrapKeys(encryptConfig(kid), layerOpts)
	if err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("second machine: %v, want the KBS's refusal", err)
	}
	if now, _ := env.Store.Get(context.Background(), protocol.ResourcePath{Repository: "default", Type: "image-kek", Tag: "app"}); !bytes.Equal(now, kek) {
		t.Fatal("the KBS's KEK was replaced")
	}
}

// TestWrapAirGapped: without a KBS the KEK is made and kept for the administrator; with
// coco-keyprovider's keypath the given file is used and nothing is kept.
func TestWrapAirGapped(t *testing.T) {
	dir := t.TempDir()
	p := newProvider(t, dir, nil)
	ann, err := p.Wrap(context.Background(), [][]byte{[]byte(kid)}, layerOpts)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := os.ReadFile(filepath.Join(dir, "default", "image-kek", "app"))
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ := keywrap.Parse(ann)
	if got, err := pkt.Open(kek); err != nil || !bytes.Equal(got, layerOpts) {
		t.Fatalf("open: %v", err)
	}

	file := filepath.Join(t.TempDir(), "kek")
	given := bytes.Repeat([]byte{0x42}, 32)
	if err := os.WriteFile(file, given, 0o600); err != nil {
		t.Fatal(err)
	}
	ann, err = p.Wrap(context.Background(), [][]byte{[]byte("keyid=kbs:///default/image-kek/given::keypath=" + file + "::algorithm=A256GCM")}, layerOpts)
	if err != nil {
		t.Fatal(err)
	}
	pkt, _ = keywrap.Parse(ann)
	if got, err := pkt.Open(given); err != nil || !bytes.Equal(got, layerOpts) {
		t.Fatalf("keypath: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "default", "image-kek", "given")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a given KEK was copied: %v", err)
	}
}

// TestCoCoSampleUnwrap: the provider opens Confidential Containers' published sample packet
// with its key file: veil-keyprovider and coco-keyprovider write the same format.
func TestCoCoSampleUnwrap(t *testing.T) {
	kek, _ := hex.DecodeString("d99b7705b0ba7a168295b3a3367270b0dd9b371bf514ca8b9ba7f0a33711daea")
	file := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(file, kek, 0o600); err != nil {
		t.Fatal(err)
	}
	packet := `{"kid":"kbs:///default/test-key/1","wrapped_data":"/3LyhluQ5hn61Uc7FC3PVNSCRUtb+KsXyehFLDmiBeqA8q+kph1lZprDxr8trNQPZqD0vRQhmQEY35buwGNUxdH5wrykBkLv91dHqG0BNcQDMSa50AdZjoM1Lt4IGHP9YxJF/xfqi8DQARgW68iWxeqh1LTLCMaqH9O51ywnbg1NbwhS4iwdE+m0da9l2MzjzIkn4m7zVeIzpTUTrnKH23TfZeVeFleS1cElqhFtl8nvCbja6VrBQXO4EUVTv9/zlsKlgFywhHg/UoPpf1s/cdI=","iv":"AAAAAAAAAAAAAAAA","wrap_type":"A256GCM"}`
	p := newProvider(t, t.TempDir(), nil)
	opts, err := p.Unwrap([][]byte{[]byte("keyid=kbs:///default/test-key/1::keypath=" + file)}, []byte(packet))
	if err != nil || !bytes.Contains(opts, []byte(`"symkey"`)) {
		t.Fatalf("%q, %v", opts, err)
	}
}

// TestRefused: each bad request is refused with what was wrong, and makes no key.
func TestRefused(t *testing.T) {
	dir := t.TempDir()
	p := newProvider(t, dir, nil)
	loose := filepath.Join(t.TempDir(), "loose")
	short := filepath.Join(t.TempDir(), "short")
	_ = os.WriteFile(loose, make([]byte, 32), 0o644)
	_ = os.WriteFile(short, make([]byte, 16), 0o600)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		params []string
		want   string
	}{
		{"no key", nil, "give one key"},
		{"two keys", []string{kid, "kbs:///default/image-kek/b"}, "give one key"},
		{"not a URI", []string{"default/image-kek/app"}, "want kbs:///"},
		{"two segments", []string{"kbs:///default/app"}, "want kbs:///"},
		{"a KBS address", []string{"kbs://kbs.example:8080/default/image-kek/app"}, "names a KBS address"},
		{"unknown option", []string{"keyid=" + kid + "::colour=blue"}, `unknown parameter "colour"`},
		{"other algorithm", []string{"keyid=" + kid + "::algorithm=A128GCM"}, "only A256GCM"},
		{"keypath readable by others", []string{"keyid=" + kid + "::keypath=" + loose}, "readable by others"},
		{"keypath too short", []string{"keyid=" + kid + "::keypath=" + short}, "is 16 bytes"},
	} {
		var ps [][]byte
		for _, s := range tc.params {
			ps = append(ps, []byte(s))
		}
		if _, err := p.Wrap(ctx, ps, layerOpts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 1 { // the lock file at most
		t.Errorf("refused requests made keys: %v", entries)
	}
	for _, in := range []string{`{"op":"keywrap"}`, `{"op":"destroy"}`, `not json`} {
		if _, err := p.Handle(ctx, []byte(in)); err == nil {
			t.Errorf("Handle(%s) accepted", in)
		}
	}
	ann, _ := keywrap.Seal(make([]byte, 32), "kbs:///default/image-kek/unknown", layerOpts)
	if _, err := p.Unwrap(nil, ann); err == nil || !strings.Contains(err.Error(), "no key-encryption key kbs:///default/image-kek/unknown on this machine") {
		t.Errorf("unwrap without the KEK: %v", err)
	}
}

// TestShippedConfig: deploy/keyprovider/ocicrypt.conf is an ocicrypt key-provider
// configuration that runs veil-keyprovider as the "veil" provider's command.
func TestShippedConfig(t *testing.T) {
	b, err := os.ReadFile("../../deploy/keyprovider/ocicrypt.conf")
	if err != nil {
		t.Fatal(err)
	}
	var c kpconfig.OcicryptConfig
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	veil, ok := c.KeyProviderConfig[keyprovider.DefaultName]
	if !ok || veil.Command == nil || filepath.Base(veil.Command.Path) != "veil-keyprovider" || veil.Grpc != "" {
		t.Fatalf("config %+v", c)
	}
}
