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

// keyProvider returns the key provider of encrypted image layers: the KBS of the measured
// initdata (veil.toml [kbs]), attested to with att, the attester of the TEE the boot checked
// the initdata with. It returns nil, and encrypted layers are refused, without a KBS or
// without an attester (a plain VM: tee none); it makes no request (the first layer key
// attests).
func keyProvider(ctx context.Context, l *launch.Launched, att attester.Attester) (imagepull.KeyProvider, error) {
	k := l.Settings.KBS
	if k.URL == "" {
		return nil, nil
	}
	if att == nil {
		log.G(ctx).Warnf("initdata names KBS %s, but this guest has no TEE to attest with (tee none): encrypted layers will be refused", k.URL)
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
	hub, err := cdh.New(c)
	if err != nil {
		return nil, err
	}
	log.G(ctx).Infof("KBS %s (tee %s): encrypted image layers are opened with its keys", k.URL, att.TEE())
	return imagepull.NewKBSKeyProvider(hub), nil
}
