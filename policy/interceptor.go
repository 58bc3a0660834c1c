package policy

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Decider judges requests and records what the allowed ones changed; *Engine is one.
type Decider interface {
	// JudgeRequest decides on r without changing any state.
	JudgeRequest(ctx context.Context, r *Request) (Decision, error)
	// Commit applies an allowed decision's state change once its request was carried out.
	Commit(d Decision) error
}

var _ Decider = (*Engine)(nil)

// Interceptor returns a ttrpc unary server interceptor that decodes each request into the
// type its method takes (from the service descriptor) and its OCI spec, if it carries one
// (ReadRequest; the handler finds that spec with SpecFrom), asks d to judge it, and then either
// calls the handler with exactly the request that was judged, or returns PermissionDenied
// with "<RequestType> denied by policy: <reason>". The policy's state changes only when the
// handler succeeded (judge, act, then commit). For the methods whose denial withholds rather
// than refuses (Method.Withhold: ReadStdout, ReadStderr, ListProcesses) a denial runs the
// handler anyway, so that the pipes drain and the host still learns the pids, and returns
// its reply with the output or the command lines cleared. A method that is not in the agent
// API is denied. Chain it after the agent's own interceptor (panic recovery, error
// conversion), so that it sits next to the handlers:
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
		r := ReadRequest(m.Name, req) // the spec decoded once: judged here, run by the handler
		dec, err := d.JudgeRequest(ctx, r)
		if errors.Is(err, ErrMalformedRequest) {
			return nil, status.Errorf(codes.InvalidArgument, "%s: %v", m.Rule, err)
		}
		if !dec.Allow && !dec.Withhold {
			return nil, dec.Err()
		}
		hctx := context.WithValue(ctx, decisionKey{}, dec)
		if r.Spec != nil {
			hctx = context.WithValue(hctx, specKey{}, r.Spec)
		}
		resp, err := handler(hctx, judged(req))
		if err != nil {
			return resp, err
		}
		if !dec.Allow {
			return m.withhold(resp)
		}
		if err := d.Commit(dec); err != nil {
			return nil, status.Errorf(codes.Internal, "%s was carried out, but the policy's state could not record it: %v", m.Name, err)
		}
		return resp, nil
	}
}

type decisionKey struct{}

type specKey struct{}

// SpecFrom returns the OCI spec of the request a handler serves, decoded once by the
// Interceptor (DecodeSpec) and judged by the policy as this very value: the handler runs it
// instead of decoding oci_spec again. It is the handler's to use (and change) for this
// request only. False outside the Interceptor or when the request carries no spec.
func SpecFrom(ctx context.Context) (*specs.Spec, bool) {
	s, ok := ctx.Value(specKey{}).(*specs.Spec)
	return s, ok && s != nil
}

// DecisionFrom returns the decision the Interceptor made on the request a handler serves (its
// Obligations are the handler's to enforce); false outside the Interceptor.
func DecisionFrom(ctx context.Context) (Decision, bool) {
	d, ok := ctx.Value(decisionKey{}).(Decision)
	return d, ok
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
