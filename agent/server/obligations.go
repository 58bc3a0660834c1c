package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	"github.com/veil-runtime/veil/agent/unseal"
	"github.com/veil-runtime/veil/policy"
	"github.com/veil-runtime/veil/policy/policies"
)

// createObligations reads the obligations of the policy's CreateContainer decision into ctx
// for the container manager. An obligation the agent does not know, or of the wrong shape,
// fails the request: the agent never drops a requirement of the measured policy.
func createObligations(ctx context.Context) (context.Context, error) {
	d, ok := policy.DecisionFrom(ctx)
	if !ok {
		return ctx, nil
	}
	for name, v := range d.Obligations {
		if name != policies.ObligationSealedMounts {
			return nil, fmt.Errorf("the policy's decision carries obligation %q, which this agent cannot enforce: %w", name, errdefs.ErrFailedPrecondition)
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("the policy's obligation %s is not a list of paths: %w", name, errdefs.ErrFailedPrecondition)
		}
		var dests []string
		for _, x := range list {
			p, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("the policy's obligation %s holds a %T, want paths: %w", name, x, errdefs.ErrFailedPrecondition)
			}
			dests = append(dests, p)
		}
		ctx = unseal.WithSealedMounts(ctx, dests)
	}
	return ctx, nil
}
