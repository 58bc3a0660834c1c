package server

import (
	"context"
	"math"

	"github.com/veil-runtime/veil/agent/api"
)

// OpenPort connects to a port on the guest's loopback for the host (port forwarding).
func (s *Server) OpenPort(ctx context.Context, req *api.OpenPortRequest) (*api.OpenPortResponse, error) {
	id, err := s.ports.Open(ctx, req.GetPort())
	if err != nil {
		return nil, err
	}
	return &api.OpenPortResponse{ConnId: id}, nil
}

// WritePort writes to a forwarded connection, and closes its writing side when asked.
func (s *Server) WritePort(ctx context.Context, req *api.WritePortRequest) (*api.WriteStreamResponse, error) {
	n, err := s.ports.Write(ctx, req.GetConnId(), req.GetData(), req.GetCloseWrite())
	if err != nil {
		return nil, err
	}
	return &api.WriteStreamResponse{Len: uint32(n)}, nil
}

// ReadPort long-polls a forwarded connection.
func (s *Server) ReadPort(ctx context.Context, req *api.ReadPortRequest) (*api.ReadStreamResponse, error) {
	max := 0
	if uint64(req.GetLen()) <= math.MaxInt32 {
		max = int(req.GetLen())
	}
	data, eof, err := s.ports.Read(ctx, req.GetConnId(), max)
	if err != nil {
		return nil, err
	}
	return &api.ReadStreamResponse{Data: data, Eof: eof}, nil
}

// ClosePort closes a forwarded connection.
func (s *Server) ClosePort(ctx context.Context, req *api.ClosePortRequest) (*api.Empty, error) {
	if err := s.ports.Close(req.GetConnId()); err != nil {
		return nil, err
	}
	return &api.Empty{}, nil
}
