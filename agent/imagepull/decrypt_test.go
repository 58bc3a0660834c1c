package imagepull_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/log"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
	kbsclient "github.com/veil-runtime/veil/kbs-client"
)

func TestMain(m *testing.M) {
	log.L.Logger.SetOutput(io.Discard) // the in-process KBS logs every request
	os.Exit(m.Run())
}

const kekPath, kekURI = "default/image-kek/app", "kbs:///default/image-kek/app"

var wantEncryptedTree = []string{"app=binary", "base=plain", "etc/", "etc/secret.conf=password=hunter2"}

// TestEncryptedPull: a sim guest attests to a real KBS, fetches the KEK, and the encrypted
// layer is decrypted, checked against its diff_id and unpacked; to a Dest and to the cache,
// with one attestation for both.
func TestEncryptedPull(t *testing.T) {
	k := kbstest.NewKBS(t, true)
	kek := newKEK()
	k.Put(t, kekPath, kek)
	reg := newRegistry(t)
	tag, d := reg.push(t, "enc", encryptedImage(t, wrapping{kek: kek, kid: kekURI}, nil))
	keys := imagepull.NewKBSKeyProvider(hub(t, k, kbstest.Measurement))

	o := reg.opts()
	o.Dest = filepath.Join(t.TempDir(), "rootfs")
	o.KeyProvider = keys
	img, err := imagepull.Pull(context.Background(), digestRef(tag, d), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := tree(t, o.Dest); !slices.Equal(got, wantEncryptedTree) {
		t.Fatalf("tree %q, want %q", got, wantEncryptedTree)
	}
	if img.Layers[0].Encrypted || !img.Layers[1].Encrypted {
		t.Errorf("layers %+v", img.Layers)
	}

	o = reg.opts()
	o.CacheDir = t.TempDir()
	o.KeyProvider = keys
	if img, err = imagepull.Pull(context.Background(), digestRef(tag, d), o); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, img.RootFS); !slices.Equal(got, wantEncryptedTree) {
		t.Fatalf("cached tree %q", got)
	}
	if n := k.Count("/kbs/v0/attest"); n != 1 {
		t.Errorf("%d attestations for two pulls, want 1", n)
	}
}

// TestEncryptedRefused: each failure is refused with a clear error and leaves nothing.
func TestEncryptedRefused(t *testing.T) {
	trusting := kbstest.NewKBS(t, true)
	kek := newKEK()
	trusting.Put(t, kekPath, kek)
	trusting.Put(t, "default/image-kek/other", newKEK())
	untrusting := kbstest.NewKBS(t, false)
	untrusting.Put(t, kekPath, kek)
	good := wrapping{kek: kek, kid: kekURI}
	const keysAnn = imagepull.AnnotationKeysPrefix + "attestation-agent"

	type tc struct {
		name        string
		w           wrapping
		edit        func(*mutate.Addendum)
		kbs         *kbstest.KBS
		measurement [48]byte
		noKeys      bool
		tamper      bool
		is          error
		want        []string
		kind        string // the KBS's error kind, when it refused
	}
	for _, c := range []tc{
		{name: "wrong KEK", w: wrapping{kek: kek, kid: "kbs:///default/image-kek/other"}, is: imagepull.ErrDecrypt,
			want: []string{"layer 1", "default/image-kek/other", "does not open"}},
		{name: "sim root not trusted", kbs: untrusting, is: imagepull.ErrDecrypt, kind: "AttestationError",
			want: []string{kekURI, "KBS http://127.0.0.1", "attest"}},
		{name: "measurement refused", measurement: [48]byte{1}, is: imagepull.ErrDecrypt, kind: "PolicyDeny",
			want: []string{kekURI, "PolicyDeny"}},
		{name: "KEK missing", w: wrapping{kek: kek, kid: "kbs:///default/image-kek/none"}, is: imagepull.ErrDecrypt, kind: "InvalidRequestPath",
			want: []string{"kbs:///default/image-kek/none", "404"}},
		{name: "wrap_type A256CTR", w: wrapping{kek: kek, kid: kekURI, packet: func(p map[string]any) { p["wrap_type"] = "A256CTR" }},
			is: imagepull.ErrDecrypt, want: []string{`wrap_type "A256CTR"`}},
		{name: "kid not a kbs URI", w: wrapping{kek: kek, kid: "default/image-kek/app"},
			is: imagepull.ErrDecrypt, want: []string{"is not kbs://"}},
		{name: "annotation not base64", edit: func(a *mutate.Addendum) { a.Annotations[keysAnn] = "!!" },
			is: imagepull.ErrDecrypt, want: []string{"not base64"}},
		{name: "no attestation-agent key", edit: func(a *mutate.Addendum) {
			a.Annotations[imagepull.AnnotationKeysPrefix+"jwe"] = a.Annotations[keysAnn]
			delete(a.Annotations, keysAnn)
		}, is: imagepull.ErrDecrypt, want: []string{"no " + keysAnn, "jwe"}},
		{name: "no pubopts", edit: func(a *mutate.Addendum) { delete(a.Annotations, imagepull.AnnotationPubOpts) },
			is: imagepull.ErrDecrypt, want: []string{"no org.opencontainers.image.enc.pubopts"}},
		{name: "HMAC altered", edit: func(a *mutate.Addendum) {
			a.Annotations[imagepull.AnnotationPubOpts] = base64.StdEncoding.EncodeToString(
				[]byte(`{"cipher":"AES_256_CTR_HMAC_SHA256","hmac":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `","cipheroptions":{}}`))
		}, is: imagepull.ErrDecrypt, want: []string{"fails its HMAC-SHA256"}},
		{name: "wrong diff_id", edit: func(a *mutate.Addendum) {
			a.Layer.(*encLayer).Diff = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
		}, is: imagepull.ErrDigestMismatch, want: []string{"diff_ids"}},
		{name: "tampered blob", tamper: true, is: imagepull.ErrDigestMismatch, want: []string{"layer 1", "compressed blob"}},
		{name: "no key provider", noKeys: true, is: imagepull.ErrUnsupported, want: []string{"no key provider", "[kbs] url"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.kbs == nil {
				c.kbs = trusting
			}
			if c.w.kek == nil {
				c.w = good
			}
			if c.measurement == ([48]byte{}) {
				c.measurement = kbstest.Measurement
			}
			reg := newRegistry(t)
			img := encryptedImage(t, c.w, c.edit)
			tag, d := reg.push(t, "enc", img)
			if c.tamper {
				ls, _ := img.Layers()
				ld, _ := ls[1].Digest()
				blob := readAll(t, ls[1].Compressed)
				reg.setTamper(serveBlob(ld, func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 1; return b }, blob, false))
			}
			for _, cache := range []bool{false, true} {
				parent := t.TempDir()
				o := reg.opts()
				if cache {
					o.CacheDir = parent
				} else {
					o.Dest = filepath.Join(parent, "rootfs")
				}
				if !c.noKeys {
					o.KeyProvider = imagepull.NewKBSKeyProvider(hub(t, c.kbs, c.measurement))
				}
				got, err := imagepull.Pull(context.Background(), digestRef(tag, d), o)
				if got != nil || !errors.Is(err, c.is) {
					t.Fatalf("cache=%v: %v, want %v", cache, err, c.is)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("cache=%v: %q does not say %q", cache, err, w)
					}
				}
				var ke *kbsclient.Error
				if c.kind != "" && (!errors.As(err, &ke) || string(ke.Kind) != c.kind) {
					t.Errorf("cache=%v: %v: KBS error kind %v, want %s", cache, err, ke, c.kind)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error holds layer content: %v", err)
				}
				leftovers(t, parent, cache)
			}
		})
	}
}

// leftovers fails when a refused pull left files: nothing in a Dest's parent, and no image
// entry or staging directory in a cache.
func leftovers(t *testing.T, parent string, cache bool) {
	t.Helper()
	if !cache {
		if e := entries(t, parent); len(e) != 0 {
			t.Errorf("left behind: %q", e)
		}
		return
	}
	for _, sub := range []string{"images/sha256", "tmp"} {
		if e := entries(t, filepath.Join(parent, sub)); len(e) != 0 {
			t.Errorf("cache %s: left behind %q", sub, e)
		}
	}
	if _, err := os.Stat(filepath.Join(parent, "images")); err == nil {
		filepath.Walk(filepath.Join(parent, "images"), func(p string, fi os.FileInfo, _ error) error {
			if fi != nil && !fi.IsDir() {
				t.Errorf("cache: left behind %s", p)
			}
			return nil
		})
	}
}
