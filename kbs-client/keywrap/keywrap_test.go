package keywrap_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/kbs-client/keywrap"
)

// cocoSampleKEK and cocoSamplePacket are Confidential Containers' published sample: the test
// key of their sample key provider and the attestation-agent annotation of a layer that
// coco-keyprovider encrypted with it (not a secret).
const (
	cocoSampleKEK    = "d99b7705b0ba7a168295b3a3367270b0dd9b371bf514ca8b9ba7f0a33711daea"
	cocoSamplePacket = `{"kid":"kbs:///default/test-key/1","wrapped_data":"/3LyhluQ5hn61Uc7FC3PVNSCRUtb+KsXyehFLDmiBeqA8q+kph1lZprDxr8trNQPZqD0vRQhmQEY35buwGNUxdH5wrykBkLv91dHqG0BNcQDMSa50AdZjoM1Lt4IGHP9YxJF/xfqi8DQARgW68iWxeqh1LTLCMaqH9O51ywnbg1NbwhS4iwdE+m0da9l2MzjzIkn4m7zVeIzpTUTrnKH23TfZeVeFleS1cElqhFtl8nvCbja6VrBQXO4EUVTv9/zlsKlgFywhHg/UoPpf1s/cdI=","iv":"AAAAAAAAAAAAAAAA","wrap_type":"A256GCM"}`
)

// TestCoCoSample: CoCo's packet parses and opens with its key to ocicrypt's layer options.
func TestCoCoSample(t *testing.T) {
	p, err := keywrap.Parse([]byte(cocoSamplePacket))
	if err != nil {
		t.Fatal(err)
	}
	if p.KEKURI() != "kbs:///default/test-key/1" {
		t.Fatalf("KEK URI %q", p.KEKURI())
	}
	kek, _ := hex.DecodeString(cocoSampleKEK)
	opts, err := p.Open(kek)
	if err != nil || !bytes.Contains(opts, []byte(`"symkey"`)) {
		t.Fatalf("open: %q, %v", opts, err)
	}
}

// TestSealOpen: what Seal writes, Parse reads and Open opens with the same KEK only; every IV
// is fresh.
func TestSealOpen(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, keywrap.KEKSize)
	opts := []byte(`{"symkey":"AAAA","cipheroptions":{"nonce":"BBBB"},"digest":"sha256:00"}`)
	a, err := keywrap.Seal(kek, "kbs:///default/image-kek/app", opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := keywrap.Seal(kek, "kbs:///default/image-kek/app", opts)
	if bytes.Equal(a, b) {
		t.Fatal("two seals are equal: the IV is not fresh")
	}
	p, err := keywrap.Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Open(kek); err != nil || !bytes.Equal(got, opts) {
		t.Fatalf("open: %q, %v", got, err)
	}
	other := bytes.Repeat([]byte{8}, keywrap.KEKSize)
	if _, err := p.Open(other); !errors.Is(err, keywrap.ErrKey) {
		t.Fatalf("another KEK: %v", err)
	}
	for _, tc := range []struct {
		kek  []byte
		kid  string
		want string
	}{
		{kek[:16], "kbs:///default/image-kek/app", "is 16 bytes"},
		{kek, "default/image-kek/app", "is not kbs://"},
		{kek, "kbs:///default/image-kek", "kid"},
		{kek, "kbs:///default/../app", "kid"},
	} {
		if _, err := keywrap.Seal(tc.kek, tc.kid, opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Seal(%d-byte key, %q): %v, want %q", len(tc.kek), tc.kid, err, tc.want)
		}
	}
}
