package server

import (
	"context"

	"github.com/veil-runtime/veil/agent/api"
	"github.com/veil-runtime/veil/agent/network"
)

// UpdateInterface configures the device whose MAC address the request names.
func (s *Server) UpdateInterface(ctx context.Context, req *api.UpdateInterfaceRequest) (*api.Interface, error) {
	return network.UpdateInterface(req.GetInterface())
}

// UpdateRoutes replaces the guest's routes by the request's complete set.
func (s *Server) UpdateRoutes(ctx context.Context, req *api.UpdateRoutesRequest) (*api.Routes, error) {
	routes, err := network.UpdateRoutes(req.GetRoutes().GetRoutes())
	if err != nil {
		return nil, err
	}
	return &api.Routes{Routes: routes}, nil
}

// ListInterfaces describes every network device of the guest.
func (s *Server) ListInterfaces(ctx context.Context, req *api.ListInterfacesRequest) (*api.Interfaces, error) {
	ifaces, err := network.ListInterfaces()
	if err != nil {
		return nil, err
	}
	return &api.Interfaces{Interfaces: ifaces}, nil
}

// ListRoutes returns the guest's routes (main table, no loopback, no kernel-kept IPv6 ones).
func (s *Server) ListRoutes(ctx context.Context, req *api.ListRoutesRequest) (*api.Routes, error) {
	routes, err := network.ListRoutes()
	if err != nil {
		return nil, err
	}
	return &api.Routes{Routes: routes}, nil
}

// AddARPNeighbors adds static neighbour entries.
func (s *Server) AddARPNeighbors(ctx context.Context, req *api.AddARPNeighborsRequest) (*api.Empty, error) {
	if err := network.AddARPNeighbors(req.GetNeighbors()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}
