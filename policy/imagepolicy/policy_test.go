package imagepolicy

import (
	"encoding/base64"
	"strings"
	"testing"
)

const pubPEM = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2G6x8pCvnkVxt7n3JOz3iC1wvw0L
fVvWbNhjZ0T3tDw4Gh3LTfZ5hCNO8rzXb6gVqJNZyMuDqzMBeCeBqwWtgA==
-----END PUBLIC KEY-----
`

var keyData = base64.StdEncoding.EncodeToString([]byte(pubPEM))

func TestParseAndLookup(t *testing.T) {
	doc := `{
	  "default": [{"type": "reject"}],
	  "transports": {
	    "docker": {
	      "reg.example": [{"type": "insecureAcceptAnything"}],
	      "reg.example/ns": [{"type": "reject"}],
	      "reg.example/ns/app": [{"type": "sigstoreSigned", "keyData": "` + keyData + `", "signedIdentity": {"type": "matchRepository"}}],
	      "reg.example/ns/app:v2": [{"type": "insecureAcceptAnything"}],
	      "*.corp.example": [{"type": "sigstoreSigned", "keyPath": "kbs:///default/cosign/pub"}],
	      "127.0.0.1:5000": [{"type": "insecureAcceptAnything"}]
	    },
	    "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}
	  }
	}`
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	pin := "sha256:" + strings.Repeat("a", 64)
	for ref, want := range map[string]string{
		"reg.example/ns/app:v1":          `transports.docker["reg.example/ns/app"]`,
		"reg.example/ns/app:v2":          `transports.docker["reg.example/ns/app:v2"]`,
		"reg.example/ns/app@" + pin:      `transports.docker["reg.example/ns/app"]`,
		"reg.example/ns/other:v1":        `transports.docker["reg.example/ns"]`,
		"reg.example/top:v1":             `transports.docker["reg.example"]`,
		"a.b.corp.example/x:1":           `transports.docker["*.corp.example"]`,
		"corp.example/x:1":               `default`,
		"busybox":                        `default`,
		"127.0.0.1:5000/app:1":           `transports.docker["127.0.0.1:5000"]`,
		"127.0.0.1:5001/app:1":           `default`,
		"reg.example.evil.com/ns/app:v1": `default`,
	} {
		img, err := ParseImage(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Lookup(img, pin).Scope; got != want {
			t.Errorf("%s: scope %s, want %s", ref, got, want)
		}
	}
	img, _ := ParseImage("reg.example/ns/app:v1")
	r := p.Lookup(img, pin)
	if got := r.Describe(0); got != `transports.docker["reg.example/ns/app"][0] (sigstoreSigned)` {
		t.Errorf("describe: %s", got)
	}
	if len(r.Requirements[0].Keys) != 1 || string(r.Requirements[0].Keys[0].PEM) != pubPEM || r.Requirements[0].Identity.Type != IdentityMatchRepository {
		t.Errorf("requirement %+v", r.Requirements[0])
	}
	img, _ = ParseImage("x.corp.example/app:1")
	if k := p.Lookup(img, pin).Requirements[0]; k.Keys[0].URI != "kbs:///default/cosign/pub" || k.Identity.Type != IdentityMatchRepoDigestOrExact {
		t.Errorf("kbs requirement %+v", k)
	}
	// A scope pinning the digest applies to a tag pulled with that pin.
	p2, err := Parse([]byte(`{"default":[{"type":"reject"}],"transports":{"docker":{"reg.example/app@` + pin + `":[{"type":"insecureAcceptAnything"}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	img, _ = ParseImage("reg.example/app:v1")
	if got := p2.Lookup(img, pin).Scope; got != `transports.docker["reg.example/app@`+pin+`"]` {
		t.Errorf("pin scope: %s", got)
	}
}

func TestParseRefuses(t *testing.T) {
	sig := func(fields string) string {
		return `{"default":[{"type":"sigstoreSigned",` + fields + `}]}`
	}
	for name, tc := range map[string]struct{ doc, want string }{
		"not JSON":          {`{`, "image policy"},
		"no default":        {`{"transports":{}}`, `"default" is missing`},
		"unknown top field": {`{"default":[{"type":"reject"}],"extra":1}`, `unknown field "extra"`},
		"trailing":          {`{"default":[{"type":"reject"}]} {}`, "data after"},
		"empty list":        {`{"default":[]}`, "default: the requirement list is empty"},
		"unknown type":      {`{"default":[{"type":"acceptIfLucky"}]}`, `default[0]: unknown requirement type "acceptIfLucky"`},
		"no type":           {`{"default":[{}]}`, `"type" is missing`},
		"reject with field": {`{"default":[{"type":"reject","keyData":"x"}]}`, `reject takes no field but "type", found "keyData"`},
		"signedBy":          {`{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}`, "signedBy (GPG simple signing) is not supported"},
		"unknown field":     {sig(`"keyData":"` + keyData + `","keyDta":"x"`), `unknown field "keyDta"`},
		"fulcio":            {sig(`"fulcio":{"caPath":"/f"}`), "keyless signatures"},
		"rekor":             {sig(`"keyData":"` + keyData + `","rekorPublicKeyData":"eA=="`), "Rekor keys"},
		"no key":            {sig(`"signedIdentity":{"type":"matchRepository"}`), "exactly one of keyPath"},
		"two keys":          {sig(`"keyData":"` + keyData + `","keyPath":"kbs:///a/b/c"`), "exactly one of keyPath"},
		"file keyPath":      {sig(`"keyPath":"/etc/cosign.pub"`), "only kbs:///"},
		"short kbs":         {sig(`"keyPath":"kbs:///a/b"`), "want kbs:///<repository>/<type>/<tag>"},
		"dotdot kbs":        {sig(`"keyPath":"kbs:///a/../c"`), "want kbs:///"},
		"bad base64":        {sig(`"keyData":"%%%"`), "not base64"},
		"not a key":         {sig(`"keyData":"` + base64.StdEncoding.EncodeToString([]byte("hello")) + `"`), `not a base64-encoded PEM "PUBLIC KEY"`},
		"remap":             {sig(`"keyData":"` + keyData + `","signedIdentity":{"type":"remapIdentity","prefix":"a","signedPrefix":"b"}`), "remapIdentity is not supported"},
		"identity field":    {sig(`"keyData":"` + keyData + `","signedIdentity":{"type":"matchExact","dockerReference":"a/b:c"}`), `matchExact takes no field`},
		"identity unknown":  {sig(`"keyData":"` + keyData + `","signedIdentity":{"type":"matchAll"}`), `unknown type "matchAll"`},
		"exactRef no tag":   {sig(`"keyData":"` + keyData + `","signedIdentity":{"type":"exactReference","dockerReference":"reg.example/app"}`), "needs a tag or a digest"},
		"transport":         {`{"default":[{"type":"reject"}],"transports":{"ftp":{"":[{"type":"reject"}]}}}`, `unknown transport "ftp"`},
		"bad scope":         {`{"default":[{"type":"reject"}],"transports":{"docker":{"http://reg":[{"type":"reject"}]}}}`, `transports.docker["http://reg"]`},
		"short scope":       {`{"default":[{"type":"reject"}],"transports":{"docker":{"library/busybox":[{"type":"reject"}]}}}`, `must be canonical`},
		"bad wildcard":      {`{"default":[{"type":"reject"}],"transports":{"docker":{"*example.com":[{"type":"reject"}]}}}`, "wildcard"},
		"bad in other tr":   {`{"default":[{"type":"reject"}],"transports":{"oci":{"":[{"type":"nope"}]}}}`, `transports.oci[""][0]: unknown requirement type`},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
	}
}

func TestIdentityMatch(t *testing.T) {
	pin := "sha256:" + strings.Repeat("b", 64)
	tagged, _ := ParseImage("reg.example/app:v1")
	digested, _ := ParseImage("reg.example/app@" + pin)
	for _, tc := range []struct {
		id      Identity
		image   string
		claimed string
		ok      bool
	}{
		{Identity{Type: IdentityMatchRepository}, "t", "reg.example/app", true},
		{Identity{Type: IdentityMatchRepository}, "t", "reg.example/other", false},
		{Identity{Type: IdentityMatchExact}, "t", "reg.example/app:v1", true},
		{Identity{Type: IdentityMatchExact}, "t", "reg.example/app:v2", false},
		{Identity{Type: IdentityMatchExact}, "t", "reg.example/app", false},
		{Identity{Type: IdentityMatchRepoDigestOrExact}, "d", "reg.example/app", true},
		{Identity{Type: IdentityMatchRepoDigestOrExact}, "d", "reg.example/other", false},
		{Identity{Type: IdentityMatchRepoDigestOrExact}, "t", "reg.example/app:v1", true},
		{Identity{Type: IdentityMatchRepoDigestOrExact}, "t", "reg.example/app", false},
		{Identity{Type: IdentityExactReference, Reference: "reg.example/signed:1"}, "t", "reg.example/signed:1", true},
		{Identity{Type: IdentityExactReference, Reference: "reg.example/signed:1"}, "t", "reg.example/app:v1", false},
		{Identity{Type: IdentityExactRepository, Repository: "reg.example/signed"}, "t", "reg.example/signed", true},
		{Identity{Type: IdentityExactRepository, Repository: "reg.example/signed"}, "t", "reg.example/app", false},
		{Identity{Type: IdentityMatchRepository}, "t", "NOT A REF", false},
	} {
		img := tagged
		if tc.image == "d" {
			img = digested
		}
		err := tc.id.Match(img, tc.claimed)
		if (err == nil) != tc.ok {
			t.Errorf("%s %s vs %q: err %v, want ok=%v", tc.id.Type, img, tc.claimed, err, tc.ok)
		}
	}
}
