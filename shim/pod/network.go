package pod

import (
	"context"
	"fmt"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/hypervisor"
	"github.com/veil-runtime/veil/shim/network"
	"github.com/veil-runtime/veil/shim/sandbox"
)

// setupNetwork wires the pod's network namespace (CNI's) for the VM and adds the tap to the
// boot options. It returns nil when there is no namespace to wire (a host-network pod: the VM
// then has loopback only).
func setupNetwork(ctx context.Context, nsPath string, opts *sandbox.Options) (*network.Endpoint, error) {
	if nsPath == "" {
		return nil, nil
	}
	ep, err := network.Setup(nsPath)
	if err != nil {
		return nil, err
	}
	opts.Network = &hypervisor.Network{TapName: ep.TapName, MAC: ep.MAC, Netns: ep.Netns}
	return ep, nil
}

// configureGuestNetwork gives the guest interface the pod's address, MTU and routes.
func configureGuestNetwork(ctx context.Context, agent api.AgentService, ep *network.Endpoint) error {
	if ep == nil {
		return nil
	}
	if _, err := agent.UpdateInterface(ctx, &api.UpdateInterfaceRequest{Interface: ep.Interface()}); err != nil {
		return fmt.Errorf("UpdateInterface %s: %w", ep.MAC, err)
	}
	if _, err := agent.UpdateRoutes(ctx, &api.UpdateRoutesRequest{Routes: &api.Routes{Routes: ep.Routes()}}); err != nil {
		return fmt.Errorf("UpdateRoutes: %w", err)
	}
	return nil
}
