package evidence

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/layout"
)

func TestInitDataDigest(t *testing.T) {
	doc := func(alg string) string {
		return "version = \"0.1.0\"\nalgorithm = \"" + alg + "\"\n\n[data]\n\"policy.rego\" = '''\npackage agent_policy\n'''\n"
	}
	s256 := sha256.Sum256([]byte(doc("sha256")))
	s384 := sha512.Sum384([]byte(doc("sha384")))
	s512 := sha512.Sum512([]byte(doc("sha512")))
	tests := []struct {
		name    string
		in      InitData
		want    []byte
		wantErr string
	}{
		{name: "sha256", in: InitData{"toml", doc("sha256")}, want: s256[:]},
		{name: "sha384", in: InitData{"toml", doc("sha384")}, want: s384[:]},
		{name: "sha512", in: InitData{"toml", doc("sha512")}, want: s512[:]},
		{name: "json format", in: InitData{"json", doc("sha256")}, wantErr: `format "json" is not supported`},
		{name: "md5", in: InitData{"toml", doc("md5")}, wantErr: `algorithm "md5" is not supported`},
		{name: "version", in: InitData{"toml", strings.Replace(doc("sha256"), "0.1.0", "0.2.0", 1)}, wantErr: `version "0.2.0" is not supported`},
		{name: "not toml", in: InitData{"toml", "version = "}, wantErr: "not valid TOML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alg, got, err := tc.in.Digest()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || alg != tc.name || hex.EncodeToString(got) != hex.EncodeToString(tc.want) {
				t.Fatalf("Digest() = %s, %x, %v; want %s, %x", alg, got, err, tc.name, tc.want)
			}
		})
	}
}

func TestPadDigest(t *testing.T) {
	d32 := make([]byte, 32)
	d64 := make([]byte, 64)
	for i := range d64 {
		d64[i] = byte(i + 1)
	}
	copy(d32, d64)
	if got := PadDigest(d32, layout.TDXMRConfigIDSize); len(got) != 48 || got[31] != 32 || got[32] != 0 {
		t.Errorf("sha256 into MRCONFIGID = %x", got)
	}
	if got := PadDigest(d64, layout.SNPHostDataSize); len(got) != 32 || got[31] != 32 {
		t.Errorf("sha512 into HOST_DATA = %x", got)
	}
}

func TestInitDataClaims(t *testing.T) {
	doc := InitData{Format: "toml", Body: "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"aa.toml\" = \"x = 1\"\n"}
	c, err := doc.Claims()
	if err != nil || c["algorithm"] != "sha384" || c["data"].(map[string]any)["aa.toml"] != "x = 1" {
		t.Fatalf("claims = %v, %v", c, err)
	}
	if _, err := (InitData{Format: "json"}).Claims(); err == nil {
		t.Fatal("json accepted")
	}
}
