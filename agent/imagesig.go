package agent

import (
	"context"

	"github.com/containerd/log"

	"github.com/veil-runtime/veil/agent/cdh"
	"github.com/veil-runtime/veil/agent/imagepull"
	"github.com/veil-runtime/veil/agent/imagesig"
	"github.com/veil-runtime/veil/agent/launch"
)

// imageVerifier returns the verifier of the initdata's image security policy, with hub (nil
// without a KBS) for its kbs:/// keys, or nil without a policy: every image is accepted, as
// before image policies existed.
func imageVerifier(ctx context.Context, l *launch.Launched, hub *cdh.Hub) imagepull.Verifier {
	if l.ImagePolicy == nil {
		log.G(ctx).Info("no image security policy in initdata: every guest-pulled image is accepted (insecureAcceptAnything)")
		return nil
	}
	if hub == nil {
		return imagesig.New(l.ImagePolicy, nil)
	}
	return imagesig.New(l.ImagePolicy, hub)
}
