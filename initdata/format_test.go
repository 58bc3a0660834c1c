package initdata_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/layout"
	"github.com/veil-runtime/veil/initdata"
)

// TestParseFormat: the KBS attest request's init-data ({"format", "body"}); the cases of
// attestation/evidence's InitData.Digest test, which this package replaced.
func TestParseFormat(t *testing.T) {
	doc := func(alg string) string {
		return "version = \"0.1.0\"\nalgorithm = \"" + alg + "\"\n\n[data]\n\"policy.rego\" = '''\npackage agent_policy\n'''\n"
	}
	s256 := sha256.Sum256([]byte(doc("sha256")))
	s384 := sha512.Sum384([]byte(doc("sha384")))
	s512 := sha512.Sum512([]byte(doc("sha512")))
	tests := []struct {
		name, format, body string
		want               []byte
		wantErr            string
	}{
		{name: "sha256", format: "toml", body: doc("sha256"), want: s256[:]},
		{name: "sha384", format: "toml", body: doc("sha384"), want: s384[:]},
		{name: "sha512", format: "toml", body: doc("sha512"), want: s512[:]},
		{name: "json format", format: "json", body: doc("sha256"), wantErr: `format: "json" is not supported`},
		{name: "md5", format: "toml", body: doc("md5"), wantErr: `algorithm: "md5" is not one of`},
		{name: "version", format: "toml", body: strings.Replace(doc("sha256"), "0.1.0", "0.2.0", 1), wantErr: `version: "0.2.0" is not supported`},
		{name: "not toml", format: "toml", body: "version = ", wantErr: "not valid TOML"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := initdata.ParseFormat(tc.format, []byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || d.Algorithm != tc.name || hex.EncodeToString(d.Digest()) != hex.EncodeToString(tc.want) {
				t.Fatalf("ParseFormat() = %+v, %v; want %s, %x", d, err, tc.name, tc.want)
			}
		})
	}
}

func TestLaunchFields(t *testing.T) {
	d32 := make([]byte, 32)
	d64 := make([]byte, 64)
	for i := range d64 {
		d64[i] = byte(i + 1)
	}
	copy(d32, d64)
	if got := initdata.TDXMRConfigID(d32); len(got) != layout.TDXMRConfigIDSize || got[31] != 32 || got[32] != 0 {
		t.Errorf("sha256 into MRCONFIGID = %x", got)
	}
	if got := initdata.SNPHostData(d64); len(got) != layout.SNPHostDataSize || got[31] != 32 {
		t.Errorf("sha512 into HOST_DATA = %x", got)
	}
}

func TestClaims(t *testing.T) {
	d, err := initdata.ParseFormat("toml", []byte("version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"aa.toml\" = \"x = 1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := d.Claims()
	if len(c) != 1 || c["aa.toml"] != "x = 1" {
		t.Fatalf("claims = %v", c)
	}
	c["aa.toml"] = "changed"
	if d.Data["aa.toml"] != "x = 1" {
		t.Fatal("Claims shares the document's data table")
	}
	if _, err := initdata.ParseFormat("json", []byte("{}")); err == nil {
		t.Fatal("json accepted")
	}
}
