package keyprovider

import (
	"context"

	pb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RegisterGRPC serves p as ocicrypt's keyprovider.KeyProviderService (the "grpc" form of an
// OCICRYPT_KEYPROVIDER_CONFIG entry) on s.
func RegisterGRPC(s *grpc.Server, p *Provider) {
	pb.RegisterKeyProviderServiceServer(s, &grpcService{p: p})
}

type grpcService struct {
	pb.UnimplementedKeyProviderServiceServer
	p *Provider
}

func (g *grpcService) WrapKey(ctx context.Context, in *pb.KeyProviderKeyWrapProtocolInput) (*pb.KeyProviderKeyWrapProtocolOutput, error) {
	return g.handle(ctx, in)
}

func (g *grpcService) UnWrapKey(ctx context.Context, in *pb.KeyProviderKeyWrapProtocolInput) (*pb.KeyProviderKeyWrapProtocolOutput, error) {
	return g.handle(ctx, in)
}

func (g *grpcService) handle(ctx context.Context, in *pb.KeyProviderKeyWrapProtocolInput) (*pb.KeyProviderKeyWrapProtocolOutput, error) {
	out, err := g.p.Handle(ctx, in.GetKeyProviderKeyWrapProtocolInput())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.KeyProviderKeyWrapProtocolOutput{KeyProviderKeyWrapProtocolOutput: out}, nil
}
