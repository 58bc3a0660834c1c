package initdata_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/attestation/layout"
	"github.com/veil-runtime/veil/initdata"
)

const doc256 = `version = "0.1.0"
algorithm = "sha256"

[data]
"policy.rego" = """
package agent_policy

default CheckRequest := true
"""
`

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		doc     string
		wantErr string
	}{
		{"valid", doc256, ""},
		{"empty data", "version = \"0.1.0\"\nalgorithm = \"sha512\"\n[data]\n", ""},
		{"not TOML", "version = ", "not valid TOML"},
		{"no version", "algorithm = \"sha256\"\n[data]\n", "version: missing"},
		{"version not a string", "version = 1\nalgorithm = \"sha256\"\n[data]\n", "version: is a integer, want a string"},
		{"other version", "version = \"0.2.0\"\nalgorithm = \"sha256\"\n[data]\n", `version: "0.2.0" is not supported`},
		{"no algorithm", "version = \"0.1.0\"\n[data]\n", "algorithm: missing"},
		{"unknown algorithm", "version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n", `algorithm: "md5" is not one of`},
		{"algorithm not a string", "version = \"0.1.0\"\nalgorithm = true\n[data]\n", "algorithm: is a boolean"},
		{"no data", "version = \"0.1.0\"\nalgorithm = \"sha256\"\n", "data: missing"},
		{"data not a table", "version = \"0.1.0\"\nalgorithm = \"sha256\"\ndata = \"x\"\n", "data: is a string, want a table"},
		{"data value not a string", "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = 3\n", `data."aa.toml": is a integer, want a string`},
		{"data value a table", "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data.x]\ny = \"z\"\n", `data."x": is a table`},
		{"unknown field", "version = \"0.1.0\"\nalgorithm = \"sha256\"\nextra = 1\n[data]\n", "extra: unknown field"},
		{"too big", "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = \"" + strings.Repeat("a", initdata.MaxDocumentSize) + "\"\n", "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := initdata.Parse([]byte(tc.doc))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(d.Raw(), []byte(tc.doc)) {
					t.Fatal("Raw() differs from the input")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// The digests were computed with coreutils (sha256sum, sha384sum, sha512sum) over the
// document with its algorithm line changed.
func TestDigestVectors(t *testing.T) {
	for _, tc := range []struct{ algorithm, want string }{
		{"sha256", "54c9f2d9396f0d3624832ca29d3870f1ed105de34ab41aa5c4f29f38d779b5a4"},
		{"sha384", "0e668373fbca43f14b5da1739fa1af2edc7114af5b6f71a860e516e27887253f0a6a567617c3dae6284f8c17a1d6011b"},
		{"sha512", "5f5ef985c40bd245d52e73d509f0ed020f3a1b41093f119d96d84eb7d52b546758833bc1eec64ee1262446800fa3fe6ba2b7892229ed922cea5ecd5460185916"},
	} {
		t.Run(tc.algorithm, func(t *testing.T) {
			doc := strings.Replace(doc256, "sha256", tc.algorithm, 1)
			d, err := initdata.Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(d.Digest()); got != tc.want {
				t.Fatalf("digest %s, want %s", got, tc.want)
			}
			p, ok := d.Policy()
			if !ok || !strings.HasPrefix(p, "package agent_policy") {
				t.Fatalf("policy %q", p)
			}
		})
	}
	// The digest is over the bytes as delivered: a re-encoding with the same meaning differs.
	a, _ := initdata.Parse([]byte(doc256))
	b, _ := initdata.Parse([]byte(doc256 + "\n"))
	if bytes.Equal(a.Digest(), b.Digest()) {
		t.Fatal("digest ignores the document's exact bytes")
	}
	if _, err := initdata.Digest("sha1", nil); err == nil {
		t.Fatal("sha1 accepted")
	}
}

func TestHostData(t *testing.T) {
	d256 := bytes.Repeat([]byte{0xaa}, 32)
	d384 := bytes.Repeat([]byte{0xbb}, 48)
	d512 := bytes.Repeat([]byte{0xcc}, 64)
	for _, tc := range []struct {
		name   string
		digest []byte
		size   int
		want   []byte
	}{
		{"sha256 in SNP", d256, layout.SNPHostDataSize, d256},
		{"sha256 in TDX padded", d256, layout.TDXMRConfigIDSize, append(bytes.Clone(d256), make([]byte, 16)...)},
		{"sha384 in TDX", d384, layout.TDXMRConfigIDSize, d384},
		{"sha384 in SNP truncated", d384, layout.SNPHostDataSize, d384[:32]},
		{"sha512 in TDX truncated", d512, layout.TDXMRConfigIDSize, d512[:48]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := initdata.HostData(tc.digest, tc.size); !bytes.Equal(got, tc.want) {
				t.Fatalf("got %x, want %x", got, tc.want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	data := map[string]string{
		"policy.rego": "package agent_policy\n\n# it's a policy\ndefault CheckRequest := true\n",
		"aa.toml":     "[token_configs.kbc]\nurl = \"http://10.0.2.2:8080\"\n",
		"tricky":      "ends with a quote'",
		"quotes":      "has ''' inside\nand a line",
		"control":     "tab\there\x01bell\r\n",
		"empty":       "",
	}
	for _, alg := range initdata.Algorithms() {
		raw, err := initdata.Marshal(alg, data)
		if err != nil {
			t.Fatal(err)
		}
		d, err := initdata.Parse(raw)
		if err != nil {
			t.Fatalf("%s:\n%s\n%v", alg, raw, err)
		}
		if d.Algorithm != alg || len(d.Data) != len(data) {
			t.Fatalf("parsed %+v", d)
		}
		for k, v := range data {
			if d.Data[k] != v {
				t.Fatalf("data[%q] = %q, want %q", k, d.Data[k], v)
			}
		}
	}
	if !strings.Contains(string(mustMarshal(t, data)), "'''\npackage agent_policy") {
		t.Fatal("the policy is not written as a readable literal string")
	}
	if _, err := initdata.Marshal("md5", data); err == nil {
		t.Fatal("md5 accepted")
	}
}

func mustMarshal(t *testing.T, data map[string]string) []byte {
	raw, err := initdata.Marshal("sha256", data)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestAnnotation(t *testing.T) {
	raw := []byte(doc256)
	ann, err := initdata.EncodeAnnotation(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := initdata.DecodeAnnotation(ann)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	// What other tools make: base64 of gzip, padding stripped or not.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw)
	zw.Close()
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		if got, err := initdata.DecodeAnnotation(enc.EncodeToString(buf.Bytes())); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("decode: %v", err)
		}
	}
	bomb := gzipBytes(t, bytes.Repeat([]byte{'a'}, 64<<20)) // 64 MiB of 'a' in ~64 KiB
	for _, tc := range []struct{ name, value, wantErr string }{
		{"not base64", "!!!", "not base64"},
		{"not gzip", base64.StdEncoding.EncodeToString([]byte("plain text")), "not gzip"},
		{"gzip bomb", base64.StdEncoding.EncodeToString(bomb), "decompresses to more than"},
		{"truncated gzip", base64.StdEncoding.EncodeToString(buf.Bytes()[:buf.Len()-6]), "decompress"},
		{"too long", strings.Repeat("A", 2*initdata.MaxDocumentSize), "more than allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := initdata.DecodeAnnotation(tc.value)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}
