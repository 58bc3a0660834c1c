package imagepull_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containers/ocicrypt/blockcipher"

	"github.com/veil-runtime/veil/agent/imagepull"
)

// kbsMap is a ResourceGetter over a map, for the key provider's unit tests.
type kbsMap map[string][]byte

func (m kbsMap) GetResource(_ context.Context, uri string) ([]byte, error) {
	if b, ok := m[uri]; ok {
		return append([]byte(nil), b...), nil
	}
	return nil, errors.New("no resource " + uri)
}

// cocoSampleKEK is the public test key of Confidential Containers' sample key provider
// (kid kbs:///default/test-key/1, all-zero IV): not a secret, a published test vector.
const cocoSampleKEK = "d99b7705b0ba7a168295b3a3367270b0dd9b371bf514ca8b9ba7f0a33711daea"

// cocoSamplePacket is the attestation-agent annotation of a layer that coco-keyprovider
// encrypted with that sample key (from a published CoCo image manifest, base64-decoded).
const cocoSamplePacket = `{"kid":"kbs:///default/test-key/1","wrapped_data":"/3LyhluQ5hn61Uc7FC3PVNSCRUtb+KsXyehFLDmiBeqA8q+kph1lZprDxr8trNQPZqD0vRQhmQEY35buwGNUxdH5wrykBkLv91dHqG0BNcQDMSa50AdZjoM1Lt4IGHP9YxJF/xfqi8DQARgW68iWxeqh1LTLCMaqH9O51ywnbg1NbwhS4iwdE+m0da9l2MzjzIkn4m7zVeIzpTUTrnKH23TfZeVeFleS1cElqhFtl8nvCbja6VrBQXO4EUVTv9/zlsKlgFywhHg/UoPpf1s/cdI=","iv":"AAAAAAAAAAAAAAAA","wrap_type":"A256GCM"}`

// TestCoCoVector: an annotation written by CoCo's coco-keyprovider opens to ocicrypt layer
// options with a 32-byte key and a 16-byte nonce.
func TestCoCoVector(t *testing.T) {
	kek, _ := hex.DecodeString(cocoSampleKEK)
	kp := imagepull.NewKBSKeyProvider(kbsMap{"kbs:///default/test-key/1": kek})
	if n := kp.Names(); len(n) != 2 || n[0] != "attestation-agent" || n[1] != "veil" {
		t.Fatalf("names %q", n)
	}
	priv, err := kp.UnwrapKey(context.Background(), []byte(cocoSamplePacket))
	if err != nil {
		t.Fatal(err)
	}
	var opts blockcipher.PrivateLayerBlockCipherOptions
	if err := json.Unmarshal(priv, &opts); err != nil {
		t.Fatalf("%v", err)
	}
	if len(opts.SymmetricKey) != 32 || len(opts.CipherOptions["nonce"]) != 16 || !strings.HasPrefix(string(opts.Digest), "sha256:") {
		t.Fatalf("options: key %d bytes, nonce %d bytes, digest %q", len(opts.SymmetricKey), len(opts.CipherOptions["nonce"]), opts.Digest)
	}
}

// TestPacketRefused: every malformed packet is refused before the KBS is asked, with what is
// wrong; a wrong KEK is refused after.
func TestPacketRefused(t *testing.T) {
	kek, _ := hex.DecodeString(cocoSampleKEK)
	asked := 0
	kbs := getterFunc(func(_ context.Context, uri string) ([]byte, error) {
		asked++
		return kbsMap{"kbs:///default/test-key/1": kek, "kbs:///default/test-key/2": make([]byte, 32), "kbs:///default/test-key/3": []byte("short")}.GetResource(context.Background(), uri)
	})
	kp := imagepull.NewKBSKeyProvider(kbs)
	var sample map[string]any
	if err := json.Unmarshal([]byte(cocoSamplePacket), &sample); err != nil {
		t.Fatal(err)
	}
	with := func(k string, v any) []byte {
		m := map[string]any{}
		for k, v := range sample {
			m[k] = v
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return b
	}
	for _, tc := range []struct {
		name   string
		packet []byte
		want   string
		asks   bool
	}{
		{"not JSON", []byte("kid=1"), "malformed", false},
		{"trailing data", []byte(cocoSamplePacket + "{}"), "data after", false},
		{"no kid", with("kid", nil), "no kid", false},
		{"kid without scheme", with("kid", "/default/test-key/1"), "is not kbs://", false},
		{"kid of two segments", with("kid", "kbs:///default/test-key"), "kid", false},
		{"kid climbing", with("kid", "kbs:///default/../1"), "kid", false},
		{"no wrapped_data", with("wrapped_data", nil), "no wrapped_data", false},
		{"wrapped_data not base64", with("wrapped_data", "%%%"), "wrapped_data", false},
		{"no iv", with("iv", nil), "no iv", false},
		{"iv of 16 bytes", with("iv", base64.StdEncoding.EncodeToString(make([]byte, 16))), "12 bytes", false},
		{"no wrap_type", with("wrap_type", nil), "no wrap_type", false},
		{"A256CTR", with("wrap_type", "A256CTR"), `wrap_type "A256CTR"`, false},
		{"other provider", with("provider", "aliyun"), `provider "aliyun"`, false},
		{"other version", with("version", "0.2.0"), `version "0.2.0"`, false},
		{"wrong KEK", with("kid", "kbs:///default/test-key/2"), "does not open", true},
		{"short KEK", with("kid", "kbs:///default/test-key/3"), "is 5 bytes", true},
		{"missing KEK", with("kid", "kbs:///default/test-key/9"), "no resource", true},
	} {
		asked = 0
		_, err := kp.UnwrapKey(context.Background(), tc.packet)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if (asked > 0) != tc.asks {
			t.Errorf("%s: asked the KBS %d times", tc.name, asked)
		}
	}
	// Version 2 packets and a KBS address in the kid (ignored) are accepted.
	for _, p := range [][]byte{with("version", "0.1.0"), with("provider", "kbs"), with("kid", "kbs://kbs.example:8080/default/test-key/1")} {
		if _, err := kp.UnwrapKey(context.Background(), p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

type getterFunc func(ctx context.Context, uri string) ([]byte, error)

func (f getterFunc) GetResource(ctx context.Context, uri string) ([]byte, error) { return f(ctx, uri) }
