package agent

import (
	"context"
	"fmt"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/agent/launch"
	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/attestation/kbs/protocol"
)

// keyProvider returns the key provider of encrypted image layers: the hub of kbsHub, nil
// (encrypted layers are refused) without one.
func keyProvider(ctx context.Context, hub *cdh.Hub, att attester.Attester) imagepull.KeyProvider {
	if hub == nil {
		return nil
	}
	log.G(ctx).Infof("KBS %s (tee %s): encrypted image layers are opened with its keys", hub.KBS(), att.TEE())
	return imagepull.NewKBSKeyProvider(hub)
}

// kbsHub returns the hub of the KBS of the measured initdata (veil.toml [kbs]), attested to
// with att, the attester of the TEE the boot checked the initdata with. It returns nil
// without a KBS or without an attester (a plain VM: tee none); it makes no request (the
// first resource fetched attests).
func kbsHub(ctx context.Context, l *launch.Launched, att attester.Attester) (*cdh.Hub, error) {
	k := l.Settings.KBS
	if k.URL == "" {
		return nil, nil
	}
	if att == nil {
		log.G(ctx).Warnf("initdata names KBS %s, but this guest has no TEE to attest with (tee none): encrypted layers and kbs:/// keys will be refused", k.URL)
		return nil, nil
	}
	c := cdh.Config{URL: k.URL, Attester: att}
	if k.CACert != "" {
		pool, err := launch.ParseCACert(k.CACert)
		if err != nil {
			return nil, fmt.Errorf("initdata: kbs.ca_cert: %w", err)
		}
		c.RootCAs = pool
	}
	if l.InitData != "" {
		c.InitData = &protocol.InitData{Format: "toml", Body: l.InitData}
	}
	return cdh.New(c)
}
