package policy

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Decider judges requests; *Engine is one.
type Decider interface {
	Decide(ctx context.Context, method string, req proto.Message) (Decision, error)
}

var _ Decider = (*Engine)(nil)

// Interceptor returns a ttrpc unary server interceptor that decodes each request into the
// type its method takes (from the service descriptor), asks d, and then either calls the
// handler with exactly the request that was judged, or returns PermissionDenied with
// "<RequestType> denied by policy: <reason>". For ReadStdout and ReadStderr a denial runs
// the handler anyway, so that the pipes drain, and returns its reply with the data cleared.
// A method that is not in the agent API is denied. Chain it after the agent's own
// interceptor (panic recovery, error conversion), so that it sits next to the handlers:
//
//	ttrpc.NewServer(ttrpc.WithChainUnaryServerInterceptor(server.Interceptor, policy.Interceptor(engine)))
func Interceptor(d Decider) ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo,
		handler ttrpc.Method) (any, error) {
		m, ok := lookup(info.FullMethod)
		if !ok {
			return nil, status.Errorf(codes.PermissionDenied, "%s denied by policy: not a method of the agent API", info.FullMethod)
		}
		req := m.input.New().Interface()
		if err := unmarshal(req); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "decode %s: %v", m.Rule, err)
		}
		dec, err := d.Decide(ctx, m.Name, req)
		if errors.Is(err, ErrMalformedRequest) {
			return nil, status.Errorf(codes.InvalidArgument, "%s: %v", m.Rule, err)
		}
		if !dec.Allow && !dec.Withhold {
			return nil, dec.Err()
		}
		resp, err := handler(ctx, judged(req))
		if err != nil || dec.Allow {
			return resp, err
		}
		return withhold(resp)
	}
}

// judged returns an unmarshaler that hands the handler a copy of req, the request the policy
// judged, rather than decoding the payload a second time.
func judged(req proto.Message) func(any) error {
	return func(v any) error {
		dst, ok := v.(proto.Message)
		if !ok || dst.ProtoReflect().Descriptor().FullName() != req.ProtoReflect().Descriptor().FullName() {
			return fmt.Errorf("policy interceptor: handler wants %T, the request is a %s", v, req.ProtoReflect().Descriptor().FullName())
		}
		proto.Reset(dst)
		proto.Merge(dst, req)
		return nil
	}
}

// withhold clears the "data" field of a reply (ReadStreamResponse), keeping the rest (eof).
func withhold(resp any) (any, error) {
	m, ok := resp.(proto.Message)
	if !ok {
		return nil, status.Errorf(codes.Internal, "policy interceptor: cannot withhold the data of a %T", resp)
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("data")
	if fd == nil || fd.Kind() != protoreflect.BytesKind {
		return nil, status.Errorf(codes.Internal, "policy interceptor: %s has no data to withhold", r.Descriptor().FullName())
	}
	r.Clear(fd)
	return resp, nil
}
