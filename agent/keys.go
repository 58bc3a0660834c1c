package agent

import (
	"context"
	"fmt"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/agent/launch"
	"github.com/veil-runtime/veil/agent/unseal"
	"github.com/veil-runtime/veil/attestation/attester"
	"github.com/veil-runtime/veil/attestation/kbswire/protocol"
	"github.com/veil-runtime/veil/initdata"
)

// keyProvider returns the key provider of encrypted image layers: the KBS hub of kbsHub, or
// nil (encrypted layers are refused).
func keyProvider(ctx context.Context, hub *cdh.Hub) imagepull.KeyProvider {
	if hub == nil {
		return nil
	}
	log.G(ctx).Infof("KBS %s: encrypted image layers are opened with its keys", hub.KBS())
	return imagepull.NewKBSKeyProvider(hub)
}

// unsealer returns what unseals the containers' sealed secrets: with the KBS hub of kbsHub
// and the verification keys the measured initdata trusts (veil.toml [kbs]
// sealed_secret_keys); without a hub every sealed value is refused.
func unsealer(ctx context.Context, l *launch.Launched, hub *cdh.Hub) *unseal.Unsealer {
	if hub == nil {
		return &unseal.Unsealer{}
	}
	keys := l.Settings.KBS.SealedSecretKeys
	log.G(ctx).Infof("KBS %s: sealed secrets are unsealed with its resources (trusted keys %q; none listed: any kbs:/// key)", hub.KBS(), keys)
	return &unseal.Unsealer{Fetcher: hub, Trusted: keys}
}

// kbsHub returns the guest's hub to the KBS of the measured initdata (veil.toml [kbs]),
// attested to with att, the attester of the TEE the boot checked the initdata with. It
// returns nil without a KBS or without an attester (a plain VM: tee none); it makes no
// request (the first resource attests).
func kbsHub(ctx context.Context, l *launch.Launched, att attester.Attester) (*cdh.Hub, error) {
	k := l.Settings.KBS
	if k.URL == "" {
		return nil, nil
	}
	if att == nil {
		log.G(ctx).Warnf("initdata names KBS %s, but this guest has no TEE to attest with (tee none): encrypted layers, sealed secrets and kbs:/// keys will be refused", k.URL)
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
		c.InitData = &protocol.InitData{Format: initdata.Format, Body: l.InitData}
	}
	hub, err := cdh.New(c)
	if err != nil {
		return nil, err
	}
	log.G(ctx).Infof("KBS %s (tee %s)", k.URL, att.TEE())
	return hub, nil
}
