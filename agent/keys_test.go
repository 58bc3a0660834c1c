package agent

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/agent/imagepull/imagepulltest"
	"github.com/veil-runtime/veil/agent/launch"
	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/attestation/kbs/kbstest"
)

// TestKeyProvider: the boot's KBS settings, attester and initdata text make a key provider
// that attests to that KBS (which checks the initdata against HOST_DATA) and opens a layer
// key; without a KBS or without an attester there is none.
func TestKeyProvider(t *testing.T) {
	ctx := context.Background()
	keyProvider := func(ctx context.Context, l *launch.Launched, a attester.Attester) (imagepull.KeyProvider, error) {
		hub, err := kbsHub(ctx, l, a)
		if err != nil || hub == nil {
			return nil, err
		}
		return keyProvider(ctx, hub), nil
	}
	k := kbstest.NewKBS(t, true)
	kek := imagepulltest.NewKEK()
	k.Put(t, "default/key/1", kek)
	att, _ := kbstest.Guest(t, kbstest.Measurement)
	withKBS := &launch.Launched{Settings: launch.Settings{KBS: launch.KBSSettings{URL: k.URL()}}, InitData: kbstest.InitData}

	for name, tc := range map[string]struct {
		l    *launch.Launched
		none bool
	}{
		"no KBS":      {l: &launch.Launched{InitData: kbstest.InitData}},
		"no attester": {l: withKBS, none: true},
	} {
		var a attester.Attester = att
		if tc.none {
			a = nil
		}
		kp, err := keyProvider(ctx, tc.l, a)
		if kp != nil || err != nil {
			t.Errorf("%s: key provider %v, err %v; want none", name, kp, err)
		}
	}
	bad := &launch.Launched{Settings: launch.Settings{KBS: launch.KBSSettings{URL: "https://kbs.example", CACert: "not PEM"}}}
	if _, err := keyProvider(ctx, bad, att); err == nil || !strings.Contains(err.Error(), "kbs.ca_cert") {
		t.Errorf("bad CA: %v", err)
	}

	kp, err := keyProvider(ctx, withKBS, att)
	if err != nil || kp == nil {
		t.Fatalf("key provider %v, err %v", kp, err)
	}
	add, err := imagepulltest.EncryptLayer([]byte("tar"), imagepulltest.Wrapping{KEK: kek, Kid: "kbs:///default/key/1"})
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := base64.StdEncoding.DecodeString(add.Annotations[imagepull.AnnotationKeysPrefix+kp.Names()[0]])
	if err != nil {
		t.Fatal(err)
	}
	opts, err := kp.UnwrapKey(ctx, pkt)
	if err != nil {
		t.Fatalf("unwrap through the KBS: %v", err)
	}
	if !strings.Contains(string(opts), `"symkey"`) {
		t.Fatalf("unwrapped options without a symkey")
	}
	if n := k.Count("/kbs/v0/attest"); n != 1 {
		t.Fatalf("%d attestations, want 1", n)
	}
}
