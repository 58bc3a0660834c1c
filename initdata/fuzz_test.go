package initdata_test

import (
	"bytes"
	"maps"
	"testing"

	"github.com/veil-runtime/veil/initdata"
)

// FuzzParse: Parse never panics; a document it accepts keeps its exact bytes, has a digest of
// its algorithm's size, reads the same through ParseFormat, survives the disk format, and
// Marshal of its content parses back to the same content.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		doc256,
		"version = \"0.1.0\"\nalgorithm = \"sha512\"\n[data]\n",
		"version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"aa.toml\" = \"x = 1\"\n\"veil.toml\" = '''\n[image]\ninsecure_registries = [\"r:5000\"]\n'''\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"tab\\there\" = \"\\u0001\\r\\n\"\n",
		"",
		"version = ",
		"version = \"0.2.0\"\nalgorithm = \"sha256\"\n[data]\n",
		"version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\nextra = 1\n[data]\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = 3\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data.x]\ny = \"z\"\n",
		"version = \"0.1.0\"\nversion = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\na = \"1\"\na = \"2\"\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\ndata = \"x\"\n",
		"version = \"0.1.0\"\nalgorithm = \"sha256\"\n[[data]]\n",
	} {
		f.Add([]byte(seed))
	}
	sizes := map[string]int{"sha256": 32, "sha384": 48, "sha512": 64}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := initdata.Parse(raw)
		d2, err2 := initdata.ParseFormat(initdata.Format, raw)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("Parse: %v; ParseFormat: %v", err, err2)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(d.Raw(), raw) || !bytes.Equal(d.Digest(), d2.Digest()) {
			t.Fatal("Raw or Digest differ between Parse and ParseFormat, or from the input")
		}
		if d.Version != initdata.Version || len(d.Digest()) != sizes[d.Algorithm] {
			t.Fatalf("accepted version %q, algorithm %q, digest of %d bytes", d.Version, d.Algorithm, len(d.Digest()))
		}
		img, err := initdata.EncodeDisk(raw)
		if len(raw) == 0 {
			if err == nil {
				t.Fatal("an empty document made a disk")
			}
		} else if back, err := initdata.DecodeDisk(img); err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("disk round trip: %v", err)
		}
		out, err := initdata.Marshal(d.Algorithm, d.Data)
		if err != nil {
			if len(raw) < initdata.MaxDocumentSize/8 {
				t.Fatalf("Marshal of an accepted document's content: %v", err)
			}
			return
		}
		m, err := initdata.Parse(out)
		if err != nil || !maps.Equal(m.Data, d.Data) {
			t.Fatalf("Marshal's document:\n%s\nparses to %v, %v; want %v", out, m, err, d.Data)
		}
	})
}
