package initdataparity

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/launch"
	"github.com/veil-runtime/veil/attestation/kbs/builtin"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/initdata"
)

const head = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n"

// corpus: each document and whether it is acceptable.
var corpus = []struct {
	name string
	doc  string
	ok   bool
}{
	{"sha256 with a policy", head + "\n[data]\n\"policy.rego\" = '''\npackage agent_policy\n\ndefault CheckRequest := true\n'''\n", true},
	{"sha384", "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"aa.toml\" = \"x = 1\"\n", true},
	{"sha512", "version = \"0.1.0\"\nalgorithm = \"sha512\"\n[data]\n\"cdh.toml\" = \"\"\n", true},
	{"empty data table", head + "[data]\n", true},
	{"every key", head + "[data]\n\"policy.rego\" = \"package agent_policy\"\n\"aa.toml\" = \"\"\n\"cdh.toml\" = \"\"\n" +
		"\"veil.toml\" = \"[image]\"\n\"image-policy.json\" = \"{}\"\n\"someone-else.toml\" = \"x\"\n", true},
	{"inline data table", head + "data = { \"aa.toml\" = \"x\" }\n", true},
	{"comments and blank lines", "# initdata\n\n" + head + "\n[data] # the table\n", true},
	{"just under the size limit", head + "[data]\nx = \"" + strings.Repeat("a", initdata.MaxDocumentSize-len(head)-16) + "\"\n", true},

	{"empty", "", false},
	{"only spaces", "  \n\n", false},
	{"oversize", head + "[data]\nx = \"" + strings.Repeat("a", initdata.MaxDocumentSize) + "\"\n", false},
	{"unknown top-level key", head + "extra = \"1\"\n[data]\n", false},
	{"unknown table", head + "[data]\n[other]\nx = \"1\"\n", false},
	{"wrong version", "version = \"0.2.0\"\nalgorithm = \"sha256\"\n[data]\n", false},
	{"version not a string", "version = 0.1\nalgorithm = \"sha256\"\n[data]\n", false},
	{"no version", "algorithm = \"sha256\"\n[data]\n", false},
	{"wrong algorithm", "version = \"0.1.0\"\nalgorithm = \"md5\"\n[data]\n", false},
	{"algorithm in capitals", "version = \"0.1.0\"\nalgorithm = \"SHA256\"\n[data]\n", false},
	{"no algorithm", "version = \"0.1.0\"\n[data]\n", false},
	{"no data table", head, false},
	{"data not a table", head + "data = \"x\"\n", false},
	{"data an array of tables", head + "[[data]]\nx = \"1\"\n", false},
	{"integer data value", head + "[data]\n\"aa.toml\" = 3\n", false},
	{"boolean data value", head + "[data]\n\"aa.toml\" = true\n", false},
	{"array data value", head + "[data]\n\"aa.toml\" = [\"x\"]\n", false},
	{"table data value", head + "[data.x]\ny = \"z\"\n", false},
	{"duplicate top-level key", head + "version = \"0.1.0\"\n[data]\n", false},
	{"duplicate data key", head + "[data]\na = \"1\"\na = \"2\"\n", false},
	{"duplicate data table", head + "[data]\na = \"1\"\n[data]\nb = \"2\"\n", false},
	{"bad TOML", "version = ", false},
	{"unterminated string", head + "[data]\na = \"x\n", false},
	{"not UTF-8", head + "[data]\na = \"\xff\"\n", false},
	{"JSON", `{"version":"0.1.0","algorithm":"sha256","data":{}}`, false},
}

type fixedReader []byte

func (r fixedReader) HostData(context.Context) ([]byte, error) { return r, nil }

// TestKBSAndAgentAgree: the KBS's ReadInitData and the agent's Measured accept and refuse the
// same documents, with the same digest; the launch field the KBS binds from its digest
// (HOST_DATA, MRCONFIGID) is the one the agent's check accepts.
func TestKBSAndAgentAgree(t *testing.T) {
	ctx := context.Background()
	for _, tc := range corpus {
		t.Run(tc.name, func(t *testing.T) {
			kd, kerr := builtin.ReadInitData(&protocol.InitData{Format: initdata.Format, Body: tc.doc})
			ad, aerr := launch.Measured(ctx, api.TEENone, nil, []byte(tc.doc))
			if (kerr == nil) != (aerr == nil) {
				t.Fatalf("the KBS and the agent disagree:\n  KBS:   %v\n  agent: %v", errText(kerr), errText(aerr))
			}
			if (kerr == nil) != tc.ok {
				t.Fatalf("accepted = %v, want %v (KBS: %v; agent: %v)", kerr == nil, tc.ok, errText(kerr), errText(aerr))
			}
			if kerr != nil {
				return
			}
			if !bytes.Equal(kd.Digest(), ad.Digest()) || len(kd.Digest()) == 0 {
				t.Fatalf("digests differ: KBS %x, agent %x", kd.Digest(), ad.Digest())
			}
			// The KBS binds its digest to the evidence's launch field; the agent's launch check
			// of the same document accepts exactly that field.
			for tee, field := range map[string][]byte{
				"snp": initdata.SNPHostData(kd.Digest()),
				"tdx": initdata.TDXMRConfigID(kd.Digest()),
			} {
				if _, err := launch.Measured(ctx, tee, fixedReader(field), []byte(tc.doc)); err != nil {
					t.Fatalf("tee %s: the agent refuses the host data the KBS binds: %v", tee, err)
				}
				other := bytes.Clone(field)
				other[0] ^= 1
				if _, err := launch.Measured(ctx, tee, fixedReader(other), []byte(tc.doc)); err == nil {
					t.Fatalf("tee %s: the agent accepts host data that differs from the KBS's binding", tee)
				}
			}
			if fmt.Sprint(kd.Claims()) != fmt.Sprint(ad.Claims()) {
				t.Fatalf("claims differ: KBS %v, agent %v", kd.Claims(), ad.Claims())
			}
		})
	}
}

// TestKBSRefusesOtherFormats: the agent reads a document only from its disk, as TOML; the KBS
// refuses init-data that names another format.
func TestKBSRefusesOtherFormats(t *testing.T) {
	for _, format := range []string{"", "json", "TOML"} {
		if _, err := builtin.ReadInitData(&protocol.InitData{Format: format, Body: corpus[0].doc}); err == nil ||
			!strings.Contains(err.Error(), "format") {
			t.Errorf("format %q: err = %v, want a format error", format, err)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "accepted"
	}
	return err.Error()
}
